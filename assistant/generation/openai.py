"""`OpenAIGenerator`: the `Generator` for an OpenAI-compatible HTTP server — how vLLM serves Polyglot-Ko with the
counselor LoRA adapter at scale:

    finetune merge --model EleutherAI/polyglot-ko-5.8b --adapter runs/polyglot-5.8b/adapter --out merged/
    vllm serve merged/ --served-model-name counselor     # vLLM's GPT-NeoX has no LoRA support: serve the merge
    JINRO_GENERATOR=openai:http://127.0.0.1:8000/v1 JINRO_OPENAI_MODEL=counselor jinro chat

Polyglot-Ko has no chat template and our prompt is already rendered (`assistant.counselor.prompt`), so the default mode posts
the rendered text to `/v1/completions` (`prompt`, `max_tokens`, `stop`, `temperature`, `stream: true`) and reads the
server-sent events (`data: {...}` lines, `choices[0].text`, until `data: [DONE]`). The server tokenizes the text
itself; vLLM parses `<|endoftext|>` in it as the EOS token, exactly as `encode_prompt` did in fine-tuning.
`mode="chat"` posts to `/v1/chat/completions` instead, for servers that only offer chat: the persona becomes the
system message and the rest of the rendered prompt (EOS markers removed) the user message.

Failure rules:
- connect errors, HTTP 408/429/5xx and a connection that breaks before any text was yielded are retried with
  exponential backoff (`Retry-After` honoured, capped at `max_backoff_s`); never after the first yielded piece, so a
  half-streamed answer is never duplicated. A read timeout is not retried (a server too slow to start is overloaded;
  retrying multiplies the wait).
- everything else raises `GenerationError` with a message that says what to change: server down, HTTP errors (status
  and the server's own message), a malformed stream, a stream cut off mid-answer. A truncated answer is never
  returned silently: pieces already yielded stay yielded, and the error follows them.
- stop strings are applied on the client too (text past a stop string is never yielded), whatever the server does.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import httpx

from assistant.errors import GenerationError, ModelServerError
from assistant.generation.base import GenerationRequest, cut_at_stop
from assistant.generation.models import encode_prompt
from assistant.generation.openai_protocol import (  # noqa: F401  (re-exported: part of this module's API)
    RETRY_STATUS,
    _Broken,
    _excerpt,
    _json,
    _load_tokenizer,
    _Retryable,
    _retry_after,
    _retryable_transport,
    estimate_tokens,
    normalize_base_url,
    server_message,
    split_persona,
)
from assistant.counselor.prompt import EOS_MARKER

Mode = Literal["completions", "chat"]


# ---------------------------------------------------------------- the generator


class OpenAIGenerator:
    """A client of an OpenAI-compatible server (vLLM, llama.cpp server, ...), sharing one pooled `httpx.Client`
    between threads.

    base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (`/v1` is added to a URL without a path).
    model: the served model name (vLLM: the `--lora-modules` name, `counselor`). `name` is `openai:{model}`.
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
        self.tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
        headers = {"Accept": "text/event-stream, application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,  # a model server is internal: no HTTP(S)_PROXY detour
        )

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
        payload = self._payload(request)
        url = f"{self.base_url}/{'chat/completions' if self.mode == 'chat' else 'completions'}"
        stops = tuple(dict.fromkeys(s for s in (*request.stop, EOS_MARKER) if s))
        state = {"yielded": False}
        attempt = 0
        while True:
            try:
                yield from self._attempt(url, payload, stops, state)
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
            resp = self._client.get(url)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, yielded=False, attempts=1) from exc
        if resp.status_code >= 400:
            raise self._http_error(resp.status_code, server_message(resp.content), f"GET {url}", attempts=1)
        try:
            ids = [m["id"] for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise GenerationError(f"{url} did not answer an OpenAI model list: {_excerpt(resp.text)}") from exc
        if self.model not in ids:
            raise GenerationError(
                f"the model server at {self.base_url} does not serve {self.model!r} (it serves {', '.join(ids)}): "
                "set JINRO_OPENAI_MODEL, or serve the adapter under that name (vllm serve ... --enable-lora "
                f"--lora-modules {self.model}=<adapter dir>)")
        return ids

    # ------------------------------------------------------------ one attempt

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        room = self.context_window - self.count_tokens(request.prompt)
        if room <= 0:
            raise GenerationError(
                f"the prompt has about {self.count_tokens(request.prompt)} tokens but the context window is "
                f"{self.context_window}: render it with render_prompt(parts, count_tokens=generator.count_tokens, "
                "max_context=generator.context_window)")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max(1, min(request.max_new_tokens, room)),
            "temperature": self.temperature,
            "stop": [s for s in dict.fromkeys(request.stop) if s],
            "stream": True,
        }
        if self.temperature > 0 and self.top_p is not None:
            body["top_p"] = self.top_p
        if self.repetition_penalty is not None:
            body["repetition_penalty"] = self.repetition_penalty
        if self.mode == "chat":
            system, user = split_persona(request.prompt, request.parts.persona)
            messages = [{"role": "system", "content": system}] if system else []
            body["messages"] = messages + [{"role": "user", "content": user}]
        else:
            body["prompt"] = request.prompt
        body.update(self.extra_body)
        return body

    def _attempt(self, url: str, payload: dict[str, Any], stops: tuple[str, ...],
                 state: dict[str, bool]) -> Iterator[str]:
        """Yield the stop-cut answer of one request; raise _Retryable while nothing was yielded."""
        hold = max(len(s) for s in stops) - 1  # keep back what could be the start of a stop string
        buffer, received = "", 0
        try:
            with self._client.stream("POST", url, json=payload) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    error = self._http_error(resp.status_code, server_message(resp.content), f"POST {url}")
                    if resp.status_code in RETRY_STATUS or resp.status_code >= 500:
                        raise _Retryable(error, _retry_after(resp.headers.get("retry-after")))
                    raise error
                for delta in self._deltas(resp, url):
                    buffer += delta
                    received += len(delta)
                    text, stopped = cut_at_stop(buffer, stops)
                    if stopped:
                        if text:
                            state["yielded"] = True
                            yield text
                        return  # leaving the block closes the response: vLLM aborts the request
                    if len(buffer) > hold:
                        state["yielded"] = True
                        yield buffer[:len(buffer) - hold]
                        buffer = buffer[len(buffer) - hold:]
        except httpx.TransportError as exc:
            error = self._transport_error(exc, yielded=state["yielded"], received=received)
            if _retryable_transport(exc) and not state["yielded"]:
                raise _Retryable(error) from exc
            raise error from exc
        except _Broken as exc:
            error = self._broken_error(str(exc), received, state["yielded"])
            if not state["yielded"]:
                raise _Retryable(error) from exc
            raise error from exc
        if buffer:
            state["yielded"] = True
            yield buffer

    def _deltas(self, resp: httpx.Response, url: str) -> Iterator[str]:
        """The text pieces of a streamed (or, from a server that ignores `stream`, whole) completion."""
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            resp.read()
            yield self._text_of(_json(resp.text, url), url, whole=True)[0]
            return
        if ctype != "text/event-stream":
            resp.read()
            raise GenerationError(
                f"{url} answered {ctype or 'no content type'} instead of an event stream ({_excerpt(resp.text)!r}): "
                "is the base URL the server's OpenAI API root (vLLM: http://HOST:PORT/v1)?")
        finished = False
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, `: keep-alive` comments, `event:`/`id:` fields
            data = line[5:].strip()
            if data == "[DONE]":
                return
            text, finish = self._text_of(_json(data, url), url, whole=False)
            finished = finished or finish
            if text:
                yield text
        if not finished:
            raise _Broken("the stream ended without `data: [DONE]`")

    def _text_of(self, obj: Any, url: str, *, whole: bool) -> tuple[str, bool]:
        """(text, finished) of one stream chunk (or of a whole non-streamed answer)."""
        if not isinstance(obj, dict):
            raise self._malformed(url, obj)
        if "error" in obj or obj.get("object") == "error":
            raise GenerationError(f"the model server at {self.base_url} reported an error while generating: "
                                  f"{server_message(json.dumps(obj, ensure_ascii=False))}")
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise self._malformed(url, obj)
        if not choices:
            return "", False  # e.g. a usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._malformed(url, obj)
        if self.mode == "chat":
            part = choice.get("message" if whole else "delta")
            text = part.get("content") if isinstance(part, dict) else None
        else:
            text = choice.get("text")
        if text is not None and not isinstance(text, str):
            raise self._malformed(url, obj)
        return text or "", choice.get("finish_reason") is not None

    # ------------------------------------------------------------ errors and backoff

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff_s * 2 ** attempt * (0.5 + random.random() / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)

    def _attempts(self, attempts: int | None = None) -> str:
        n = self.max_retries + 1 if attempts is None else attempts
        return f"{n} attempt{'s' if n > 1 else ''}"

    def _http_error(self, status: int, message: str, what: str, attempts: int | None = None) -> GenerationError:
        hint = ""
        if status in (401, 403):
            hint = " — check the API key (JINRO_OPENAI_API_KEY; vLLM: --api-key)"
        elif status == 404:
            hint = (f" — is {self.model!r} served (JINRO_OPENAI_MODEL; vLLM: --lora-modules {self.model}=<adapter>) "
                    f"and is {self.base_url} the OpenAI API root (…/v1)?")
        elif status in (400, 422):
            hint = " — the server rejected the request (prompt longer than the served context? unknown field?)"
        elif status in RETRY_STATUS or status >= 500:
            hint = f" (gave up after {self._attempts(attempts)})"
        return ModelServerError(f"the model server answered HTTP {status} to {what}: {message}{hint}",
                                status=status, server_message=message)

    def _transport_error(self, exc: httpx.TransportError, *, yielded: bool, received: int = 0,
                         attempts: int | None = None) -> GenerationError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return GenerationError(
                f"cannot reach the model server at {self.base_url} ({detail}; {self._attempts(attempts)}) — is vLLM "
                "running? set JINRO_GENERATOR=openai:<base URL> to where it listens")
        if isinstance(exc, httpx.ReadTimeout):
            if yielded:
                return GenerationError(
                    f"the model server at {self.base_url} went silent mid-answer (read timeout of "
                    f"{self.read_timeout_s:g}s after {received} characters): the answer is incomplete")
            return GenerationError(
                f"the model server at {self.base_url} sent nothing within the read timeout of "
                f"{self.read_timeout_s:g}s — overloaded or stuck? raise read_timeout_s or add capacity")
        if isinstance(exc, httpx.PoolTimeout):
            return GenerationError(f"all connections to the model server at {self.base_url} stayed busy for "
                                   f"{self.read_timeout_s:g}s (pool timeout): raise max_connections")
        if isinstance(exc, httpx.TimeoutException):
            return GenerationError(f"timeout talking to the model server at {self.base_url} ({detail})")
        return self._broken_error(f"the connection broke ({detail})", received, yielded)

    def _broken_error(self, what: str, received: int, yielded: bool) -> GenerationError:
        if yielded or received:
            return GenerationError(
                f"the model server at {self.base_url} stopped mid-answer: {what} after {received} characters; "
                "the answer is incomplete (server crashed or restarted? see its log)")
        return GenerationError(
            f"the model server at {self.base_url} closed the stream before any text: {what} ({self._attempts()})")

    def _malformed(self, url: str, obj: Any) -> GenerationError:
        return GenerationError(f"malformed stream chunk from {url} (not an OpenAI "
                               f"{'chat ' if self.mode == 'chat' else ''}completion chunk): "
                               f"{_excerpt(json.dumps(obj, ensure_ascii=False))}")


__all__ = ["OpenAIGenerator", "estimate_tokens", "normalize_base_url", "server_message", "split_persona"]
