"""How `OpenAIGenerator` judges a failed call to an OpenAI-compatible model server: whether to retry it, how long
to wait, and the `GenerationError` that tells the user what to change (the server's own message and a hint)."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from assistant.errors import GenerationError, ModelServerError

RETRY_STATUS = frozenset({408, 429})  # and every 5xx
_EXCERPT = 300


def retryable_status(status: int) -> bool:
    return status in RETRY_STATUS or status >= 500


def retryable_transport(exc: openai.APIConnectionError) -> bool:
    """Connect errors and broken connections; not timeouts once connected (the server is up but slow)."""
    cause = exc.__cause__
    if isinstance(cause, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return True
    return not isinstance(exc, openai.APITimeoutError) and isinstance(
        cause, (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def server_message(body: bytes | str) -> str:
    """The error message of an error body: OpenAI's `{"error": {"message"}}`, vLLM's `{"message"}`, FastAPI's
    `{"detail"}`, else the body itself (shortened)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = json.loads(text)
    except ValueError:
        return excerpt(text) or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return excerpt(str(err["message"]))
        if isinstance(err, str) and err:
            return excerpt(err)
        for key in ("message", "detail"):
            if obj.get(key):
                value = obj[key]
                return excerpt(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return excerpt(text)


@dataclass(frozen=True)
class ServerFailures:
    """The error messages about one model server (`attempts`: how many were made, default all of them)."""

    base_url: str
    model: str
    read_timeout_s: float
    max_retries: int

    def attempts(self, attempts: int | None = None) -> str:
        n = self.max_retries + 1 if attempts is None else attempts
        return f"{n} attempt{'s' if n > 1 else ''}"

    def http(self, exc: openai.APIStatusError, what: str, attempts: int | None = None) -> ModelServerError:
        status, message = exc.status_code, server_message(exc.response.content)
        hint = ""
        if status in (401, 403):
            hint = " — check the API key (JINRO_OPENAI_API_KEY; vLLM: --api-key)"
        elif status == 404:
            hint = (f" — is {self.model!r} served (JINRO_OPENAI_MODEL; vLLM: --lora-modules {self.model}=<adapter>) "
                    f"and is {self.base_url} the OpenAI API root (…/v1)?")
        elif status in (400, 422):
            hint = " — the server rejected the request (prompt longer than the served context? unknown field?)"
        elif retryable_status(status):
            hint = f" (gave up after {self.attempts(attempts)})"
        return ModelServerError(f"the model server answered HTTP {status} to {what}: {message}{hint}",
                                status=status, server_message=message)

    def transport(self, exc: openai.APIConnectionError, *, yielded: bool, received: int = 0,
                  attempts: int | None = None) -> GenerationError:
        cause = exc.__cause__ or exc
        detail = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        if isinstance(cause, (httpx2.ConnectError, httpx2.ConnectTimeout)):
            return GenerationError(
                f"cannot reach the model server at {self.base_url} ({detail}; {self.attempts(attempts)}) — is vLLM "
                "running? set JINRO_GENERATOR=openai:<base URL> to where it listens")
        if isinstance(cause, httpx2.ReadTimeout):
            if yielded:
                return GenerationError(
                    f"the model server at {self.base_url} went silent mid-answer (read timeout of "
                    f"{self.read_timeout_s:g}s after {received} characters): the answer is incomplete")
            return GenerationError(
                f"the model server at {self.base_url} sent nothing within the read timeout of "
                f"{self.read_timeout_s:g}s — overloaded or stuck? raise read_timeout_s or add capacity")
        if isinstance(cause, httpx2.PoolTimeout):
            return GenerationError(f"all connections to the model server at {self.base_url} stayed busy for "
                                   f"{self.read_timeout_s:g}s (pool timeout): raise max_connections")
        if isinstance(exc, openai.APITimeoutError):
            return GenerationError(f"timeout talking to the model server at {self.base_url} ({detail})")
        return self.broken(f"the connection broke ({detail})", received, yielded)

    def broken(self, what: str, received: int, yielded: bool) -> GenerationError:
        if yielded or received:
            return GenerationError(
                f"the model server at {self.base_url} stopped mid-answer: {what} after {received} characters; "
                "the answer is incomplete (server crashed or restarted? see its log)")
        return GenerationError(
            f"the model server at {self.base_url} closed the stream before any text: {what} ({self.attempts()})")

    def generating(self, body: str) -> GenerationError:
        return GenerationError(f"the model server at {self.base_url} reported an error while generating: "
                               f"{server_message(body)}")

    def malformed(self, url: str, obj: Any, *, chat: bool) -> GenerationError:
        return GenerationError(f"malformed stream chunk from {url} (not an OpenAI {'chat ' if chat else ''}"
                               f"completion chunk): {excerpt(json.dumps(obj, ensure_ascii=False))}")
