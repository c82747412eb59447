"""`OpenAIGenerator`: the `Generator` for an OpenAI-compatible HTTP server — how vLLM serves Polyglot-Ko with the
counselor LoRA adapter at scale:

    finetune merge --model EleutherAI/polyglot-ko-5.8b --adapter runs/polyglot-5.8b/adapter --out merged/
    vllm serve merged/ --served-model-name counselor     # vLLM's GPT-NeoX has no LoRA support: serve the merge
    JINRO_GENERATOR=openai:http://127.0.0.1:8000/v1 JINRO_OPENAI_MODEL=counselor jinro chat

The official `openai` client does the wire work (URLs, auth, JSON, server-sent events, typed errors). Polyglot-Ko
has no chat template and our prompt is already rendered (`assistant.counselor.prompt`), so the default mode sends it
to `completions` as is (vLLM parses `<|endoftext|>` in it as the EOS token, as `encode_prompt` did in fine-tuning);
`mode="chat"` uses `chat.completions`, the persona as the system message, the rest (EOS markers removed) as the user's.

What this module adds to the client:
- stop strings applied on the client too (text past a stop string is never yielded), whatever the server does;
- its own retries (the client's are off: they retry read timeouts, and cannot retry a stream that breaks before
  its first token): connect errors, HTTP 408/429/5xx and a connection that breaks before any text was yielded are
  retried with exponential backoff (`Retry-After` honoured, capped at `max_backoff_s`); never after the first
  yielded piece, so a half-streamed answer is never duplicated; never a read timeout (a server too slow to start
  is overloaded; retrying multiplies the wait);
- errors that say what to change (`GenerationError`): server down, HTTP errors (status, the server's own message,
  a hint), a malformed stream, a stream cut off mid-answer (one that ends without a `finish_reason`). A truncated
  answer is never returned silently: pieces already yielded stay yielded, and the error follows them;
- token counts without the served model: a local tokenizer, or `estimate_tokens`.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping
from urllib.parse import urlsplit

import httpx2
import openai

from assistant.counselor.prompt import EOS_MARKER
from assistant.errors import GenerationError
from assistant.generation.base import GenerationRequest, cut_at_stop, split_persona
from assistant.generation.models import encode_prompt, load_local_tokenizer
from assistant.generation.openai_failures import (
    ServerFailures,
    excerpt,
    retry_after,
    retryable_status,
    retryable_transport,
)
from assistant.generation.token_estimate import estimate_tokens

Mode = Literal["completions", "chat"]


class OpenAIGenerator:
    """A client of an OpenAI-compatible server (vLLM, llama.cpp server, ...), sharing one `openai.OpenAI` client
    (and its connection pool) between threads.

    base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (`/v1` is added to a URL without a path).
    model: the served model name (vLLM: the `--lora-modules` name, `counselor`). `name` is `openai:{model}`.
    api_key: sent as `Authorization: Bearer`; without one, vLLM's placeholder `EMPTY` (a server without a key
        ignores it).
    mode: `completions` (the rendered prompt as is; right for Polyglot-Ko) or `chat`.
    temperature / top_p / repetition_penalty: greedy by default like `TransformersGenerator`; top_p is sent only
        when sampling; repetition_penalty (a vLLM extension, default 1.1 as in `TransformersGenerator`) is left out
        when None — do that for a server that rejects unknown fields. `extra_body` adds any other fields.
    context_window: the served model's length (2048 for Polyglot-Ko); `max_tokens` is clipped to what is left.
    tokenizer: a local Hugging Face tokenizer directory (or a loaded tokenizer) for exact `count_tokens`;
        without one, `estimate_tokens` (conservative).
    connect_timeout_s / read_timeout_s: connecting, and the longest silence while waiting for the first token or
        between two chunks.
    max_retries / backoff_s / max_backoff_s: retries before the first yielded piece, waiting
        backoff_s * 2**attempt (with jitter, at least Retry-After), at most max_backoff_s.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "counselor",
        api_key: str | None = None,
        mode: Mode = "completions",
        temperature: float = 0.0,
        top_p: float = 0.9,
        repetition_penalty: float | None = 1.1,
        extra_body: Mapping[str, Any] | None = None,
        context_window: int = 2048,
        tokenizer: str | Path | Any | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_connections: int = 32,
    ) -> None:
        if mode not in ("completions", "chat"):
            raise GenerationError(f"mode {mode!r} is not 'completions' or 'chat'")
        if not model:
            raise GenerationError("no model name: set JINRO_OPENAI_MODEL to the served model (vLLM: the LoRA name)")
        if context_window <= 0 or max_retries < 0 or connect_timeout_s <= 0 or read_timeout_s <= 0:
            raise GenerationError("context_window and the timeouts must be positive and max_retries not negative")
        self.base_url = normalize_base_url(base_url)
        self.model, self.mode, self.name = model, mode, f"openai:{model}"
        self.temperature, self.top_p, self.repetition_penalty = temperature, top_p, repetition_penalty
        self.extra_body = dict(extra_body or {})
        self.context_window = context_window
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.tokenizer = load_local_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
        self.failures = ServerFailures(self.base_url, model, read_timeout_s, max_retries)
        timeout = httpx2.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout,
            http_client=httpx2.Client(
                timeout=timeout,
                limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
                trust_env=False))  # a model server is internal: no HTTP(S)_PROXY detour

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAIGenerator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ Generator protocol

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(encode_prompt(self.tokenizer, text))
        return estimate_tokens(text)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        kwargs = self._request_args(request)
        stops = tuple(dict.fromkeys(s for s in (*request.stop, EOS_MARKER) if s))
        state = {"yielded": False}
        attempt = 0
        while True:
            try:
                yield from self._attempt(kwargs, stops, state)
                return
            except _Retryable as failure:
                if attempt >= self.max_retries:
                    raise failure.error from failure.__cause__
                time.sleep(self._delay(attempt, failure.delay))
                attempt += 1

    def check(self) -> list[str]:
        """The models the server lists (`GET /models`); GenerationError when it is down or does not serve `model`."""
        url = f"{self.base_url}/models"
        try:
            ids = [m.id for m in self._client.models.list().data]
        except openai.APIStatusError as exc:
            raise self.failures.http(exc, f"GET {url}", attempts=1) from exc
        except openai.APIConnectionError as exc:  # and APITimeoutError
            raise self.failures.transport(exc, yielded=False, attempts=1) from exc
        except (openai.APIError, ValueError, TypeError, AttributeError) as exc:
            raise GenerationError(f"{url} did not answer an OpenAI model list: {excerpt(str(exc))}") from exc
        if self.model not in ids:
            raise GenerationError(
                f"the model server at {self.base_url} does not serve {self.model!r} (it serves {', '.join(ids)}): "
                "set JINRO_OPENAI_MODEL, or serve the adapter under that name (vllm serve ... --enable-lora "
                f"--lora-modules {self.model}=<adapter dir>)")
        return ids

    # ------------------------------------------------------------ one attempt

    def _request_args(self, request: GenerationRequest) -> dict[str, Any]:
        room = self.context_window - self.count_tokens(request.prompt)
        if room <= 0:
            raise GenerationError(
                f"the prompt has about {self.count_tokens(request.prompt)} tokens but the context window is "
                f"{self.context_window}: render it with render_prompt(parts, count_tokens=generator.count_tokens, "
                "max_context=generator.context_window)")
        args: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max(1, min(request.max_new_tokens, room)),
            "temperature": self.temperature,
            "stop": [s for s in dict.fromkeys(request.stop) if s],
            "stream": True,
        }
        if self.temperature > 0 and self.top_p is not None:
            args["top_p"] = self.top_p
        extra: dict[str, Any] = {}
        if self.repetition_penalty is not None:
            extra["repetition_penalty"] = self.repetition_penalty
        if self.mode == "chat":
            system, user = split_persona(request.prompt, request.parts.persona)
            messages = [{"role": "system", "content": system}] if system else []
            args["messages"] = messages + [{"role": "user", "content": user}]
        else:
            args["prompt"] = request.prompt
        args["extra_body"] = {**extra, **self.extra_body}
        return args

    def _attempt(self, kwargs: dict[str, Any], stops: tuple[str, ...], state: dict[str, bool]) -> Iterator[str]:
        """Yield the stop-cut answer of one request; raise _Retryable while nothing was yielded."""
        url = f"{self.base_url}/{'chat/completions' if self.mode == 'chat' else 'completions'}"
        hold = max(len(s) for s in stops) - 1  # keep back what could be the start of a stop string
        buffer, received = "", 0
        endpoint = self._client.chat.completions if self.mode == "chat" else self._client.completions
        try:
            with endpoint.create(**kwargs) as stream:  # leaving the block closes the response: vLLM aborts
                for delta in self._deltas(stream, url):
                    buffer += delta
                    received += len(delta)
                    text, stopped = cut_at_stop(buffer, stops)
                    if stopped:
                        if text:
                            state["yielded"] = True
                            yield text
                        return
                    if len(buffer) > hold:
                        state["yielded"] = True
                        yield buffer[:len(buffer) - hold]
                        buffer = buffer[len(buffer) - hold:]
        except openai.APIStatusError as exc:
            error = self.failures.http(exc, f"POST {url}")
            if retryable_status(exc.status_code):
                raise _Retryable(error, retry_after(exc.response.headers.get("retry-after"))) from exc
            raise error from exc
        except openai.APIConnectionError as exc:  # and APITimeoutError
            error = self.failures.transport(exc, yielded=state["yielded"], received=received)
            if retryable_transport(exc) and not state["yielded"]:
                raise _Retryable(error) from exc
            raise error from exc
        except openai.APIError as exc:  # an `{"error": ...}` event in the stream
            raise self.failures.generating(json.dumps({"error": exc.body}, ensure_ascii=False)) from exc
        except json.JSONDecodeError as exc:
            raise GenerationError(
                f"malformed stream chunk from {url} (not JSON: {exc}): {excerpt(exc.doc)!r}") from exc
        except _Broken as exc:
            error = self.failures.broken(str(exc), received, state["yielded"])
            if not state["yielded"]:
                raise _Retryable(error) from exc
            raise error from exc
        if buffer:
            state["yielded"] = True
            yield buffer

    def _deltas(self, stream: openai.Stream[Any], url: str) -> Iterator[str]:
        """The text pieces of a streamed (or, from a server that ignores `stream`, whole) completion."""
        response = stream.response
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            _read_whole(response)
            try:
                obj = json.loads(response.text)
            except ValueError as exc:
                raise GenerationError(f"malformed answer from {url} (not JSON: {exc}): "
                                      f"{excerpt(response.text)!r}") from exc
            yield self._text_of(obj, url, whole=True)[0]
            return
        if ctype != "text/event-stream":
            _read_whole(response)
            raise GenerationError(
                f"{url} answered {ctype or 'no content type'} instead of an event stream "
                f"({excerpt(response.text)!r}): is the base URL the server's OpenAI API root "
                "(vLLM: http://HOST:PORT/v1)?")
        finished = False
        for chunk in stream:  # the client parses loosely: malformed chunks come through and are checked here
            obj = chunk.to_dict(warnings=False) if isinstance(chunk, openai.BaseModel) else chunk
            text, finish = self._text_of(obj, url, whole=False)
            finished = finished or finish
            if text:
                yield text
        if not finished:
            raise _Broken("the stream ended without a final chunk (`finish_reason`) or without `data: [DONE]`")

    def _text_of(self, obj: Any, url: str, *, whole: bool) -> tuple[str, bool]:
        """(text, finished) of one stream chunk (or of a whole non-streamed answer)."""
        if not isinstance(obj, dict):
            raise self.failures.malformed(url, obj, chat=self.mode == "chat")
        if "error" in obj or obj.get("object") == "error":
            raise self.failures.generating(json.dumps(obj, ensure_ascii=False))
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise self.failures.malformed(url, obj, chat=self.mode == "chat")
        if not choices:
            return "", False  # e.g. a usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self.failures.malformed(url, obj, chat=self.mode == "chat")
        if self.mode == "chat":
            part = choice.get("message" if whole else "delta")
            text = part.get("content") if isinstance(part, dict) else None
        else:
            text = choice.get("text")
        if text is not None and not isinstance(text, str):
            raise self.failures.malformed(url, obj, chat=self.mode == "chat")
        return text or "", choice.get("finish_reason") is not None

    # ------------------------------------------------------------ backoff

    def _delay(self, attempt: int, server_wait: float | None) -> float:
        delay = self.backoff_s * 2 ** attempt * (0.5 + random.random() / 2)
        if server_wait is not None:  # Retry-After
            delay = max(delay, server_wait)
        return min(delay, self.max_backoff_s)


# ---------------------------------------------------------------- what the client lacks


def normalize_base_url(base_url: str) -> str:
    """`http://host:8000` -> `http://host:8000/v1` (vLLM's API root); a URL with a path is kept as given."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GenerationError(
            f"{base_url!r} is not an http(s) URL: set JINRO_GENERATOR=openai:http://HOST:PORT/v1 (the server's "
            "OpenAI API root)")
    return url if parts.path else url + "/v1"


def _read_whole(response: httpx2.Response) -> None:
    """Read a non-streamed body, failing as the client's stream does (its errors are the ones `_attempt` judges)."""
    try:
        response.read()
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except httpx2.TransportError as exc:
        raise openai.APIConnectionError(request=response.request) from exc


class _Retryable(Exception):
    """One attempt failed in a way that is safe to retry (nothing was yielded yet)."""

    def __init__(self, error: GenerationError, delay: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.delay = error, delay


class _Broken(Exception):
    """The stream ended or broke before it was complete."""


__all__ = ["OpenAIGenerator", "normalize_base_url", "split_persona"]  # split_persona: from base
