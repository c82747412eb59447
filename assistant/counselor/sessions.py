"""Session records: create, fetch (owner-checked), find by a client's name, list, count, correct the profile,
delete (right to erasure), expire."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from assistant.errors import SessionNotFound
from assistant.counselor.profile import Profile
from ingest.redaction import redact
from db.conversation import ChatSession, Message

NAMESPACE = uuid.UUID("6f1c2a5e-3b7d-4c1e-9a55-2f0d8b9e7c41")  # session ids derived from (owner, a client's name)

def create_session(factory: sessionmaker[Session], owner: str, profile: dict[str, Any] | None = None, *,
                   session_id: str | None = None) -> ChatSession:
    """A new session; `session_id` picks its id (the API derives stable ids from a client's session name)."""
    p = Profile()
    for slot, value in (profile or {}).items():
        for v in value if isinstance(value, list) else [value]:
            p.set(slot, redact(str(v)), 0)  # a profile is personal data's favourite place: redacted like messages
    row = ChatSession(id=session_id or str(uuid.uuid4()), owner=owner, profile=p.to_json())
    with factory() as s:
        s.add(row)
        s.commit()
    return row


def get_session(s: Session, session_id: str, owner: str | None, *, idle_timeout: timedelta | None = None) -> ChatSession:
    """The session, if it exists, belongs to `owner` (None = any owner: admins) and has not expired."""
    row = s.get(ChatSession, session_id)
    if row is None or (owner is not None and row.owner != owner):
        raise SessionNotFound(f"no session {session_id!r} — create one first (POST /v1/sessions)")
    if idle_timeout is not None and row.last_active_at < datetime.now(timezone.utc) - idle_timeout:
        raise SessionNotFound(f"session {session_id!r} expired after {idle_timeout} without activity — start a new one")
    return row


def session_for_name(factory: sessionmaker[Session], owner: str, name: str | None, *,
                     idle_timeout: timedelta | None = None) -> str:
    """The session for this owner and name: an own session id as is, otherwise a per-owner session derived from
    the name (created on first use; recreated if it expired). No name: a new session. An own session id that
    expired raises `SessionNotFound`."""
    if not name:
        return create_session(factory, owner).id
    with factory() as s:
        row = s.get(ChatSession, name)
        if row is not None and row.owner == owner:
            get_session(s, name, owner, idle_timeout=idle_timeout)  # expired: SessionNotFound
            return name
    sid = str(uuid.uuid5(NAMESPACE, f"{owner}\n{name}"))
    with factory() as s:
        exists = s.get(ChatSession, sid) is not None
        if exists:
            try:
                get_session(s, sid, owner, idle_timeout=idle_timeout)
                return sid
            except SessionNotFound:  # expired: erase it and start afresh under the same name
                pass
    if exists:
        delete_session(factory, sid, owner)
    try:
        create_session(factory, owner, session_id=sid)
    except IntegrityError:  # created by a concurrent first request
        pass
    return sid


def list_sessions(factory: sessionmaker[Session], owner: str | None, limit: int = 50, offset: int = 0) -> list[ChatSession]:
    with factory() as s:
        q = select(ChatSession).order_by(ChatSession.last_active_at.desc()).limit(limit).offset(offset)
        if owner is not None:
            q = q.where(ChatSession.owner == owner)
        return list(s.scalars(q))


def count_sessions(factory: sessionmaker[Session], owner: str | None) -> int:
    with factory() as s:
        q = select(func.count(ChatSession.id))
        if owner is not None:
            q = q.where(ChatSession.owner == owner)
        return int(s.scalar(q) or 0)


def update_profile(factory: sessionmaker[Session], session_id: str, owner: str | None, values: dict[str, Any], *,
                    idle_timeout: timedelta | None = None) -> ChatSession:
    """Each slot in `values` replaces the stored values of that slot (a value or a list); None or [] clears it."""
    with factory() as s:
        row = get_session(s, session_id, owner, idle_timeout=idle_timeout)
        profile = Profile.from_json(row.profile)
        for slot, value in values.items():
            profile.slots.pop(slot, None)
            for v in value if isinstance(value, list) else ([] if value is None else [value]):
                profile.set(slot, redact(str(v)), row.turns)
        row.profile = profile.to_json()
        s.commit()
        return row


def delete_session(factory: sessionmaker[Session], session_id: str, owner: str | None) -> int:
    """Erase a session with its messages, feedback and reviews. Returns the number of messages erased."""
    with factory() as s:
        row = get_session(s, session_id, owner)
        n = s.scalar(select(func.count(Message.id)).where(Message.session_id == row.id)) or 0
        s.execute(delete(ChatSession).where(ChatSession.id == row.id))
        s.commit()
    return int(n)


def expire_sessions(factory: sessionmaker[Session], idle_timeout: timedelta) -> int:
    """Erase sessions idle for longer than `idle_timeout` (retention for minors' conversations)."""
    cutoff = datetime.now(timezone.utc) - idle_timeout
    with factory() as s:
        ids = list(s.scalars(select(ChatSession.id).where(ChatSession.last_active_at < cutoff)))
        if ids:
            s.execute(delete(ChatSession).where(ChatSession.id.in_(ids)))
            s.commit()
    return len(ids)


def history(factory: sessionmaker[Session], session_id: str, owner: str | None, *, limit: int = 50,
            before: int | None = None) -> list[Message]:
    """Messages of a session, newest page first (`before` = a seq to page back from), returned oldest first."""
    with factory() as s:
        get_session(s, session_id, owner)
        q = select(Message).where(Message.session_id == session_id)
        if before is not None:
            q = q.where(Message.seq < before)
        rows = list(s.scalars(q.order_by(Message.seq.desc()).limit(limit)))
    return rows[::-1]
