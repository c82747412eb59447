"""The API application factory: `create_app(settings)` (uvicorn: `assistant.api.app:create_app --factory`).

Layering as in fastapi/full-stack-fastapi-template: routes (assistant/api/routes) declare their needs through
`Annotated` dependencies (deps.py), which hand them the app state and the authenticated caller; database work
lives in crud.py and in the assistant/ingest packages. Everything a worker needs is built here once; all
conversation state is in the database, so any worker (or a restarted one) can continue any session.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.api import problems
from assistant.api.deps import ApiState
from assistant.api.metrics import ApiMetrics, MetricsMiddleware, ResponseObserver
from assistant.api.ratelimit import RateLimiter, build_limiter
from assistant.api.routes import chat_completions, health, knowledge, messages, review, sessions, web
from assistant.api.security import install_log_scrubber
from assistant.runtime import Runtime
from ingest.background import IngestWorker
from assistant.counselor.sessions import expire_sessions
from db.settings import Settings

log = logging.getLogger("jinro.api")
access_log = logging.getLogger("jinro.api.access")
UPLOAD_PATHS = frozenset({"/v1/knowledge/documents"})
EXPIRY_EVERY_S = 600.0

DESCRIPTION = """jinro, a Korean career-counseling assistant, as a session-aware REST API.

Authenticate with `Authorization: Bearer <API key>` (keys: `jinro keys create --role client|reviewer|admin`).
Start a session (`POST /v1/sessions`), then send the student's messages to it; the server keeps the memory
(profile, summary, occupations in play). `/v1/chat/completions` offers the same counselor in the OpenAI shape.
Errors are `application/problem+json` documents whose `detail` says what to do.
"""


class BodyLimit:
    """413 for bodies over the limit: by Content-Length at once, or counted while buffering a chunked body."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope.get("path") in UPLOAD_PATHS else self.limit
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                await self._reject(scope, receive, send, limit)
                return
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        p = problems.too_large(limit)
        body = problems.problem_body(p.status, p.slug, p.title, p.detail, scope.get("path"))
        await JSONResponse(body, status_code=413, media_type=problems.PROBLEM_JSON,
                           headers={"Connection": "close"})(scope, receive, send)


class NoStore:
    """`Cache-Control: no-store` on every /v1/ response: they carry conversations, profiles and exports, which no
    browser or proxy cache may keep."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, send_no_store)


class AccessLog(ResponseObserver):
    """One line per request on `jinro.api.access`: method, path (never the query), status, time, key prefix."""

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        key = (scope.get("state") or {}).get("key_prefix", "-")
        access_log.info("%s %s %d %.1fms key=%s", scope.get("method"), scope.get("path"), status, seconds * 1000, key)


def _warm(state: ApiState) -> None:
    try:
        state.runtime.counselor.warm()
        state.ready.set()
    except Exception as exc:
        state.warm_error = f"{type(exc).__name__}: {exc}"
        log.error("could not load the knowledge index: %s", state.warm_error)


def _expire_loop(state: ApiState, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            n = expire_sessions(state.factory, state.idle_timeout)
            if n:
                log.info("erased %d session(s) idle for more than %s", n, state.idle_timeout)
        except Exception as exc:
            log.warning("session expiry failed: %s", exc)
        stop.wait(EXPIRY_EVERY_S)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               limiter: RateLimiter | None = None) -> FastAPI:
    """The API for `settings` (default: JINRO_* environment). Tests may pass a built `runtime` to share one
    warmed counselor between apps, and a `limiter`."""
    settings = settings or Settings()
    if runtime is None:
        runtime = Runtime.from_settings(settings, expire_idle_sessions=True, background_refresh=True)
    metrics = ApiMetrics()
    runtime.counselor.metrics = metrics
    metrics.watch_snapshots(runtime.retriever.corpus)
    idle = timedelta(minutes=settings.session_idle_minutes) if settings.session_idle_minutes else None
    if limiter is None:  # buckets are per key id, and key ids are per database: namespace them by database
        namespace = "jinro:ratelimit:" + hashlib.sha256(settings.database_url().encode()).hexdigest()[:12]
        limiter = build_limiter(settings.rate_limit_per_minute, settings.rate_limit_burst, settings.redis_url,
                                namespace=namespace)
    state = ApiState(settings, runtime, limiter, metrics, idle)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        if not state.ready.is_set():
            threading.Thread(target=_warm, args=(state,), name="jinro-warm", daemon=True).start()
        if idle is not None:
            threading.Thread(target=_expire_loop, args=(state, stop), name="jinro-expiry", daemon=True).start()
        state.ingest_worker = IngestWorker(state.runtime.knowledge, state.ingest_lock, name=f"pid {os.getpid()}").start()
        yield
        stop.set()
        state.ingest_worker.stop()

    app = FastAPI(title="jinro API", version=health.VERSION, description=DESCRIPTION, lifespan=lifespan,
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.jinro = state
    problems.install(app)
    for module in (sessions, messages, chat_completions, review, knowledge, health):
        app.include_router(module.router)
    web.install(app)  # the student chat (/app) and review console (/console) pages, files under /static
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes)
    app.add_middleware(NoStore)
    app.add_middleware(AccessLog)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_log_scrubber()
    return app
