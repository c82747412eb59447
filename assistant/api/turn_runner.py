"""Running counselor turns for the routes: whole (JSON) or streamed (SSE).

A streamed turn runs in its own thread and hands pieces to the response through a queue. The thread always runs
to the end, so a client that disconnects mid-answer still gets its turn stored exactly once (the counselor
stores the turn after the last piece). The first item is awaited before the response starts, so a missing
session or an empty message is an ordinary problem response, not an error event in a 200 stream.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator, Iterator

from assistant.api.deps import ApiState
from assistant.counselor.turn import TurnResult

_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def run_turn(state: ApiState, session_id: str, text: str, owner: str | None, surface: str) -> TurnResult:
    start = time.perf_counter()
    result = state.runtime.counselor.turn(session_id, text, owner=owner)
    state.metrics.observe_turn(surface, time.perf_counter() - start)
    return result


class StreamedTurn:
    """`await first()` then `async for item in rest()`: str pieces, then the TurnResult."""

    def __init__(self, state: ApiState, session_id: str, text: str, owner: str | None, surface: str) -> None:
        self.state, self.session_id, self.text, self.owner, self.surface = state, session_id, text, owner, surface
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._thread = threading.Thread(target=self._work, name="jinro-turn", daemon=True)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down): the turn still completes
            pass

    def _work(self) -> None:
        start = time.perf_counter()
        try:
            items: Iterator[str | TurnResult] = self.state.runtime.counselor.stream(self.session_id, self.text,
                                                                                    owner=self.owner)
            for item in items:
                if isinstance(item, TurnResult):
                    self.state.metrics.observe_turn(self.surface, time.perf_counter() - start)
                self._put(item)
        except BaseException as exc:
            self._put(_Failed(exc))
        finally:
            self._put(_END)

    async def _next(self) -> Any:
        item = await self._queue.get()
        if isinstance(item, _Failed):
            raise item.exc
        return item

    async def first(self) -> Any:
        """Start the turn and wait for its first item; raises the turn's error if it fails before any output."""
        self._thread.start()
        self._first = await self._next()
        return self._first

    async def rest(self) -> AsyncIterator[str | TurnResult]:
        item = self._first
        while item is not _END:
            yield item
            item = await self._next()
