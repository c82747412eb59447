"""/v1/sessions: create, read, list, correct the profile, erase."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from assistant.api import crud
from assistant.api.deps import CurrentCaller, OwnSession, PageParams, State, next_offset
from assistant.api.schemas import ProfileIn, SessionCreate, SessionOut, SessionPage
from assistant.counselor.sessions import count_sessions, create_session, delete_session, list_sessions, update_profile

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
NOT_FOUND = {404: {"description": "no such session for this key, or it expired"}}


def _profile_values(profile: ProfileIn | None) -> dict[str, Any]:
    return {} if profile is None else profile.model_dump(exclude_none=True)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
def create(state: State, caller: CurrentCaller, response: Response, body: SessionCreate | None = None) -> dict:
    """Start a conversation, optionally with what is known about the student (`{slot: value or [values]}`)."""
    row = create_session(state.factory, caller.owner, _profile_values(body.profile if body else None))
    response.headers["Location"] = f"/v1/sessions/{row.id}"
    return crud.session_json(row, state.expires_at(row))


@router.get("", response_model=SessionPage)
def list_own(state: State, caller: CurrentCaller, page: PageParams) -> dict:
    """Your sessions, most recently active first."""
    total = count_sessions(state.factory, caller.owner)
    rows = list_sessions(state.factory, caller.owner, page.limit, page.offset)
    return {"items": [crud.session_json(r, state.expires_at(r)) for r in rows], "total": total,
            "limit": page.limit, "offset": page.offset, "next_offset": next_offset(page, total)}


@router.get("/{session_id}", response_model=SessionOut, responses=NOT_FOUND)
def read(session: OwnSession, state: State) -> dict:
    """The session's memory: profile, rolling summary, occupations in play, careful/urgent flags, turn count."""
    return crud.session_json(session, state.expires_at(session))


@router.patch("/{session_id}/profile", response_model=SessionOut, responses=NOT_FOUND)
def correct_profile(session: OwnSession, state: State, caller: CurrentCaller, body: ProfileIn) -> dict:
    """Correct the profile: each slot given replaces the stored values; `null` or `[]` clears the slot."""
    values = {slot: getattr(body, slot) for slot in body.model_fields_set}
    row = update_profile(state.factory, session.id, caller.scope, values, idle_timeout=state.idle_timeout)
    return crud.session_json(row, state.expires_at(row))


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def erase(session: OwnSession, state: State, caller: CurrentCaller) -> Response:
    """Erase the session with its messages, feedback, reviews and profile (right to erasure). Not reversible."""
    delete_session(state.factory, session.id, caller.scope)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
