"""POST /v1/chat/completions: the counselor behind the OpenAI chat-completions shape.

The conversation lives on the server: the session is named by the `X-Session-Id` header or the `user` field
(created on first use, per API key), and only the LAST user message is the student's turn; earlier messages
the client resends are ignored. The answer's sources come in the extra `citations` field, and the turn's other
data (session, message id, safety) in `jinro`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Header, Response
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from assistant.api.deps import ApiState, CurrentCaller, State
from assistant.api.problems import Problem, problem_of
from assistant.api.schemas import ChatCompletionIn, ChatMessageIn
from assistant.api.security import Caller
from assistant.api.turn_runner import StreamedTurn, run_turn
from assistant.counselor.turn import TurnResult
from assistant.counselor.sessions import session_for_name

router = APIRouter(tags=["chat completions"])


def _text(m: ChatMessageIn) -> str:
    if isinstance(m.content, str):
        return m.content
    if isinstance(m.content, list):
        return " ".join(str(p.get("text", "")) for p in m.content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def student_turn(body: ChatCompletionIn) -> str:
    last = body.messages[-1]
    text = _text(last).replace("\x00", "")
    if last.role != "user" or not text.strip():
        raise Problem(422, "no-user-message", "the last message must be a non-empty `user` message — it is the "
                      "student's turn (earlier messages are ignored: the session remembers the conversation)")
    return text


def resolve_session(state: ApiState, caller: Caller, name: str | None) -> str:
    """The session for this key and name (`session_for_name`: an own session id, or one derived from the name)."""
    return session_for_name(state.factory, caller.owner, name, idle_timeout=state.idle_timeout)


def _usage(state: ApiState, question: str, answer: str) -> dict[str, int]:
    count = state.runtime.counselor.generator.count_tokens
    p, c = count(question), count(answer)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _extra(result: TurnResult) -> dict[str, Any]:
    return {"citations": result.citations,
            "jinro": {k: v for k, v in result.to_json().items() if k not in ("answer", "citations")}}


def completion(state: ApiState, body: ChatCompletionIn, question: str, result: TurnResult) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{result.message_id}", "object": "chat.completion", "created": int(time.time()),
        "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer}, "finish_reason": "stop"}],
        "usage": _usage(state, question, result.answer), **_extra(result),
    }


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **extra: Any) -> str:
    return json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra},
                      ensure_ascii=False, default=str)


async def chunks(turn: StreamedTurn, model: str) -> AsyncIterator[ServerSentEvent]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    yield ServerSentEvent(_chunk(cid, created, model, {"role": "assistant", "content": ""}))
    try:
        async for item in turn.rest():
            if isinstance(item, TurnResult):
                yield ServerSentEvent(_chunk(cid, created, model, {}, "stop", **_extra(item)))
            else:
                yield ServerSentEvent(_chunk(cid, created, model, {"content": item}))
    except Exception as exc:
        problem = problem_of(exc)
        yield ServerSentEvent(json.dumps({"error": {"message": problem["detail"], "type": problem["type"],
                                                    "code": problem["status"]}, **problem}, ensure_ascii=False))
    yield ServerSentEvent("[DONE]")


@router.post("/v1/chat/completions", responses={
    200: {"description": "`chat.completion`, or with `stream: true` `chat.completion.chunk` server-sent events "
                         "ending with `data: [DONE]`", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    404: {"description": "the named session expired"}, 422: {"description": "no user message to answer"}})
async def chat_completions(body: ChatCompletionIn, state: State, caller: CurrentCaller, response: Response,
                           x_session_id: Annotated[str | None, Header(max_length=200)] = None) -> Any:
    """OpenAI-compatible chat completions; the session is `X-Session-Id` or `user` (see the module doc)."""
    question = student_turn(body)
    name = (x_session_id or body.user or "").strip() or None
    sid = await run_in_threadpool(resolve_session, state, caller, name)
    headers = {"X-Session-Id": sid}
    if body.stream:
        turn = StreamedTurn(state, sid, question, caller.owner, "openai-stream")
        await turn.first()
        return EventSourceResponse(chunks(turn, body.model), ping=15, headers={**headers, "Cache-Control": "no-store"})
    result = await run_in_threadpool(run_turn, state, sid, question, caller.owner, "openai")
    response.headers.update(headers)
    return completion(state, body, question, result)
