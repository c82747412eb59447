"""/v1/sessions/{id}/messages (a turn, JSON or SSE; the history) and /v1/messages/{id}/feedback."""

from __future__ import annotations

import json
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from assistant.api import crud
from assistant.api.deps import CurrentCaller, MessageId, OwnSession, SessionId, State
from assistant.api.problems import problem_of
from assistant.api.schemas import FeedbackIn, FeedbackOut, MessageIn, MessagePage, TurnOut
from assistant.api.turn_runner import StreamedTurn, run_turn
from assistant.counselor.turn import TurnResult
from assistant.counselor.sessions import history

router = APIRouter(tags=["messages"])

SSE_DOC = (
    "With `Accept: text/event-stream` the answer streams as server-sent events: `event: token` with data "
    '`{"text": piece}` for each piece, then `event: final` with the same object as the JSON response; a failure '
    "after the stream started is an `event: error` carrying a problem document."
)
TURN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the counselor's answer", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    404: {"description": "no such session for this key, or it expired"},
    409: {"description": "another turn of this session was stored at the same time: send it again"},
    422: {"description": "the message cannot be answered (e.g. empty)"},
}


def wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "").lower()


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


async def sse_events(turn: StreamedTurn) -> AsyncIterator[ServerSentEvent]:
    try:
        async for item in turn.rest():
            if isinstance(item, TurnResult):
                yield ServerSentEvent(_json(item.to_json()), event="final")
            else:
                yield ServerSentEvent(_json({"text": item}), event="token")
    except Exception as exc:
        yield ServerSentEvent(_json(problem_of(exc)), event="error")


@router.post("/v1/sessions/{session_id}/messages", response_model=TurnOut, responses=TURN_RESPONSES,
             description="One student turn: the counselor's answer with its citations, the facts used, the safety "
                         "screen and timings. " + SSE_DOC)
async def send_message(session_id: SessionId, body: MessageIn, request: Request, state: State,
                       caller: CurrentCaller) -> Any:
    if wants_sse(request):
        turn = StreamedTurn(state, session_id, body.text, caller.scope, "sse")
        await turn.first()
        return EventSourceResponse(sse_events(turn), ping=15, headers={"Cache-Control": "no-store"})
    result = await run_in_threadpool(run_turn, state, session_id, body.text, caller.scope, "json")
    return result.to_json()


@router.get("/v1/sessions/{session_id}/messages", response_model=MessagePage,
            responses={404: {"description": "no such session for this key, or it expired"}})
def list_messages(session: OwnSession, state: State, caller: CurrentCaller,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  before: Annotated[int | None, Query(ge=1, le=2**31, description="a seq: return older messages")] = None,
                  ) -> dict:
    """The conversation, newest page first, each page oldest first; follow `next_before` to page back."""
    rows = history(state.factory, session.id, caller.scope, limit=limit, before=before)
    return {"items": [crud.message_json(m) for m in rows],
            "next_before": rows[0].seq if rows and rows[0].seq > 1 else None}


@router.post("/v1/messages/{message_id}/feedback", status_code=status.HTTP_201_CREATED, response_model=FeedbackOut,
             tags=["messages"], responses={404: {"description": "no such answer in your sessions"}})
def feedback(message_id: MessageId, body: FeedbackIn, state: State, caller: CurrentCaller) -> dict:
    """Rate an answer. A thumbs-down queues it for a counselor's review (unless it is already queued higher)."""
    out = crud.add_feedback(state.factory, message_id, caller.owner, body.rating, body.comment)
    state.metrics.feedback.labels(body.rating).inc()
    return out
