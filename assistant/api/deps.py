"""The dependencies routes declare (`Annotated[..., Depends(...)]`): the app state, the authenticated caller
(with its rate limit), role checks, the caller's own session, paging.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from assistant.api import crud
from assistant.api.metrics import ApiMetrics
from assistant.api.problems import forbidden, rate_limited, unauthorized
from assistant.api.ratelimit import RateLimiter
from assistant.api.security import ADMIN_ROLES, REVIEW_ROLES, Caller
from assistant.runtime import Runtime
from assistant.counselor.sessions import get_session
from db.conversation import ChatSession
from db.settings import Settings
from ingest.background import IngestWorker

MAX_ID = 2**63 - 1


@dataclass
class ApiState:
    """Everything a request needs, built once per app (per worker process)."""

    settings: Settings
    runtime: Runtime
    limiter: RateLimiter
    metrics: ApiMetrics
    idle_timeout: timedelta | None
    ready: threading.Event = field(default_factory=threading.Event)
    warm_error: str | None = None
    ingest_lock: threading.Lock = field(default_factory=threading.Lock)
    ingest_worker: IngestWorker | None = None  # works the queue of uploads (ingest.background); set by the lifespan

    @property
    def factory(self) -> sessionmaker[Session]:
        return self.runtime.knowledge.factory

    def expires_at(self, row: ChatSession) -> datetime | None:
        if self.idle_timeout is None:
            return None
        return row.last_active_at + self.idle_timeout


def get_state(request: Request) -> ApiState:
    return request.app.state.jinro


State = Annotated[ApiState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False, description="An API key from `jinro keys create`: `Authorization: Bearer jnr_…`")


def authenticate(request: Request, state: State,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    if credentials is None:
        raise unauthorized("missing API key — send `Authorization: Bearer <key>` (an admin creates keys with "
                           "`jinro keys create --role client`)")
    caller = crud.authenticate(state.factory, credentials.credentials)
    if caller is None:
        # wrong keys are throttled per client address like a key's requests: guessing keys is not free
        failed = state.limiter.take(f"auth-fail:{request.client.host if request.client else '-'}")
        if not failed.allowed:
            state.metrics.rate_limited.inc()
            raise rate_limited(failed.retry_after)
        raise unauthorized("unknown or revoked API key — check the key, or ask an admin for a new one "
                           "(`jinro keys create`)")
    request.state.key_prefix = caller.prefix
    decision = state.limiter.take(f"key:{caller.key_id}")
    if not decision.allowed:
        state.metrics.rate_limited.inc()
        raise rate_limited(decision.retry_after)
    return caller


CurrentCaller = Annotated[Caller, Depends(authenticate)]


def require_reviewer(caller: CurrentCaller) -> Caller:
    if caller.role not in REVIEW_ROLES:
        raise forbidden(f"this endpoint needs a reviewer or admin key; yours is a {caller.role} key")
    return caller


def require_admin(caller: CurrentCaller) -> Caller:
    if caller.role not in ADMIN_ROLES:
        raise forbidden(f"this endpoint needs an admin key; yours is a {caller.role} key")
    return caller


Reviewer = Annotated[Caller, Depends(require_reviewer)]
Admin = Annotated[Caller, Depends(require_admin)]
SessionId = Annotated[str, Path(min_length=1, max_length=64, description="a session id from POST /v1/sessions")]
MessageId = Annotated[int, Path(ge=1, le=MAX_ID)]


def own_session(session_id: SessionId, caller: CurrentCaller, state: State) -> ChatSession:
    """The session if the caller may use it (another client's session is 404, exactly like a missing one)."""
    with state.factory() as s:
        return get_session(s, session_id, caller.scope, idle_timeout=state.idle_timeout)


OwnSession = Annotated[ChatSession, Depends(own_session)]


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


def paging(limit: Annotated[int, Query(ge=1, le=200, description="items per page")] = 50,
           offset: Annotated[int, Query(ge=0, le=10**9, description="items to skip")] = 0) -> Paging:
    return Paging(limit, offset)


PageParams = Annotated[Paging, Depends(paging)]


def next_offset(p: Paging, total: int) -> int | None:
    return p.offset + p.limit if p.offset + p.limit < total else None
