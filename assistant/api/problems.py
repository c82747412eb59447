"""Every error of the API as `application/problem+json` (RFC 9457): {type, title, status, detail}.

Domain errors (the `JinroError` tree drawn in `db/errors.py`) are mapped to HTTP statuses in ONE place
(`DOMAIN_ERRORS`); the most specific class wins, and any other `JinroError` falls back to the root's entry. Each
detail says what went wrong and what to do about it. Routes raise `Problem` (or a domain error) and never
build error responses themselves; `crud` and the packages below raise domain errors only.
"""

from __future__ import annotations

import http
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.errors import (
    AssistantError,
    SafetyModelError,
    ConcurrentTurn,
    DocumentNotFound,
    JobNotFound,
    EmptyKnowledge,
    GenerationError,
    InvalidInput,
    MessageNotFound,
    ModelServerError,
    NotAnAnswer,
    NotFound,
    PromptError,
    RetrievalError,
    ReviewNotFound,
    SessionNotFound,
)
from db.errors import DatabaseError, DatabaseUnavailable, JinroError, VectorIndexError
from ingest.errors import IngestError

log = logging.getLogger("jinro.api")
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"

# exception class -> (status, slug, title); looked up along the exception's MRO, so the most specific wins
DOMAIN_ERRORS: dict[type[BaseException], tuple[int, str, str]] = {
    SessionNotFound: (404, "session-not-found", "Session not found"),
    MessageNotFound: (404, "message-not-found", http.HTTPStatus(404).phrase),
    ReviewNotFound: (404, "review-not-found", http.HTTPStatus(404).phrase),
    DocumentNotFound: (404, "document-not-found", http.HTTPStatus(404).phrase),
    JobNotFound: (404, "job-not-found", http.HTTPStatus(404).phrase),
    NotFound: (404, "not-found", http.HTTPStatus(404).phrase),
    NotAnAnswer: (422, "not-an-answer", http.HTTPStatus(422).phrase),
    InvalidInput: (422, "invalid-input", http.HTTPStatus(422).phrase),
    EmptyKnowledge: (503, "knowledge-empty", "The knowledge DB is empty"),
    RetrievalError: (422, "unanswerable-query", "The message cannot be answered"),
    ConcurrentTurn: (409, "concurrent-turn", "Another turn of this session was stored at the same time"),
    PromptError: (422, "prompt-error", "The conversation cannot be turned into a prompt"),
    ModelServerError: (502, "model-server-error", "The model server answered with an error"),
    GenerationError: (503, "generator-unavailable", "The answer generator is unavailable"),
    SafetyModelError: (503, "safety-unavailable", "The crisis screen is unavailable"),
    AssistantError: (400, "assistant-error", "The assistant cannot handle this request"),
    IngestError: (422, "ingest-error", "The documents cannot be ingested"),
    DatabaseUnavailable: (503, "database-unavailable", "The database is unavailable"),
    VectorIndexError: (503, "index-unavailable", "The vector index is unavailable"),
    DatabaseError: (503, "database-error", "Database error"),
    JinroError: (500, "jinro-error", "The request could not be completed"),
    OperationalError: (503, "database-busy", "The database is busy or unreachable"),
}
_DETAIL_FOR = {
    OperationalError: "the database could not complete the request — retry in a moment",
}


class Problem(Exception):
    """An HTTP error the API answers with a problem document; `extra` members are added to it."""

    def __init__(self, status: int, slug: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail
        self.title = title or http.HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="jinro"'})


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", detail)


def rate_limited(retry_after: float) -> Problem:
    seconds = max(1, int(retry_after + 0.999))
    return Problem(429, "rate-limited", f"too many requests for this API key — retry after {seconds} s, or ask an "
                   "admin for a higher limit (JINRO_RATE_LIMIT_PER_MINUTE / JINRO_RATE_LIMIT_BURST)",
                   headers={"Retry-After": str(seconds)})


def too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", f"the request body is larger than {limit} bytes — send less (split the "
                   "upload into several requests, or shorten the message)")


def problem_body(status: int, slug: str, title: str, detail: str, instance: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def _response(request: Request | None, status: int, slug: str, title: str, detail: str,
              headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    path = request.url.path if request is not None else None
    if path and path.startswith("/v1/chat/"):  # OpenAI clients read `error.message`
        extra.setdefault("error", {"message": detail, "type": slug, "code": status})
    return JSONResponse(problem_body(status, slug, title, detail, path, **extra), status_code=status,
                        headers=headers, media_type=PROBLEM_JSON)


def domain_mapping(exc: BaseException) -> tuple[int, str, str, str]:
    """(status, slug, title, detail) of a domain or database error."""
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            status, slug, title = DOMAIN_ERRORS[cls]
            return status, slug, title, _DETAIL_FOR.get(cls, str(exc) or title)
    return 500, "internal-error", "Internal server error", (
        "the server failed to handle this request — try again; if it keeps failing, report the time of the request")


def problem_of(exc: BaseException) -> dict[str, Any]:
    """The problem document of any exception (used for SSE `error` events, where no response can be sent)."""
    if isinstance(exc, Problem):
        return problem_body(exc.status, exc.slug, exc.title, exc.detail, **exc.extra)
    status, slug, title, detail = domain_mapping(exc)
    return problem_body(status, slug, title, detail)


_PLAIN = {  # pydantic error type -> the rule in plain words ({min} / {max} from the error's context)
    "missing": "is required", "string_type": "must be text", "int_parsing": "must be a whole number",
    "bool_parsing": "must be true or false", "float_parsing": "must be a number", "list_type": "must be a list",
    "dict_type": "must be an object", "model_type": "must be an object", "json_invalid": "is not valid JSON",
    "extra_forbidden": "is not a field this request takes", "literal_error": "must be one of the allowed values",
    "enum": "must be one of the allowed values", "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}", "greater_than": "must be more than {gt}", "less_than": "must be less than {lt}",
}


def _plain_message(e: dict[str, Any]) -> str:
    kind, ctx = e.get("type", ""), e.get("ctx") or {}
    if kind in ("too_short", "string_too_short"):
        low = ctx.get("min_length", 1)
        return "must not be empty" if low in (0, 1) else f"must have at least {low} characters"
    if kind in ("too_long", "string_too_long"):
        unit = "characters" if kind == "string_too_long" or e.get("loc", ("",))[-1] in ("text", "note") else "items"
        return f"must be at most {ctx.get('max_length', '?')} {unit}"
    if kind in ("literal_error", "enum") and "expected" in ctx:
        return f"must be {ctx['expected']}"
    template = _PLAIN.get(kind)
    return template.format(**ctx) if template else str(e.get("msg", "is invalid")).lower()


def _plain_location(loc: tuple) -> str:
    """`body.profile.interests.0`: pydantic's internal branch names (`function-after[...]`, `list[...]`) dropped."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or "(" in p))) or "request"


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    for e in exc.errors():
        item = {"location": _plain_location(tuple(e.get("loc", ()))), "message": _plain_message(e),
                "type": e.get("type", "")}
        if not any(x["location"] == item["location"] and x["message"] == item["message"] for x in errors):
            errors.append(item)
    # a union (one value or a list) reports every branch: a type mismatch of one branch is noise beside a deeper error
    errors = [x for x in errors if not (x["type"].endswith("_type") and any(
        y["location"].startswith(x["location"] + ".") for y in errors))] or errors
    first = errors[0] if errors else {"location": "request", "message": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{first['location']}: {first['message']}{more} — fix the request as described in /docs "
            "(the `errors` member lists every problem)", errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return _response(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return _response(request, 422, "validation-error", "The request is invalid", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else "Error"
        detail = str(exc.detail) if exc.detail and exc.detail != phrase else phrase
        if status == 404:
            detail = f"no such endpoint {request.method} {request.url.path} — see /docs for the API"
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path} — see /docs for the methods it takes"
        return _response(request, status, phrase.lower().replace(" ", "-"), phrase, detail,
                         dict(exc.headers or {}))

    for cls in DOMAIN_ERRORS:
        @app.exception_handler(cls)
        async def _domain(request: Request, exc: Exception) -> JSONResponse:
            status, slug, title, detail = domain_mapping(exc)
            if status >= 500:
                log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
            return _response(request, status, slug, title, detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        status, slug, title, detail = domain_mapping(exc)
        return _response(request, status, slug, title, detail)
