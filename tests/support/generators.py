"""Fake generators: implementations of our `Generator` interface that stand in for an LLM."""

from __future__ import annotations

from typing import Iterator

from assistant.generation.base import GenerationRequest, Generator
from assistant.generation.grounded import GroundedGenerator


class ScriptedGenerator(Generator):
    """A stand-in LLM: answers with a fixed text and records every request it got."""

    name = "scripted"

    def __init__(self, answer: str, context_window: int = 2048) -> None:
        self.answer, self.context_window = answer, context_window
        self.requests: list[GenerationRequest] = []
        self.pieces_out = 0  # pieces handed out so far (a guard that stops the model stops this count)
        self.closed = False

    def count_tokens(self, text: str) -> int:
        return len(text)  # one token per character: a strict budget

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.requests.append(request)
        self.pieces_out, self.closed = 0, False
        try:
            for i in range(0, len(self.answer), 5):
                self.pieces_out += 1
                yield self.answer[i : i + 5]
        finally:
            self.closed = True


class RecordingGrounded(GroundedGenerator):
    """The real grounded generator, recording every request it got."""

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.requests.append(request)
        yield from super().stream(request)


class ReadingGenerator(ScriptedGenerator):
    """A stand-in LLM that also reads turns: it answers a turn-understanding request (`LLMTurnReader`'s) with
    `reading`, every other request with `answer`."""

    def __init__(self, answer: str, reading: str, context_window: int = 4096) -> None:
        super().__init__(answer, context_window)
        self.reading = reading
        self.readings: list[GenerationRequest] = []

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        from assistant.counselor.llm_understanding import INSTRUCTIONS

        if request.parts.persona == INSTRUCTIONS:
            self.readings.append(request)
            yield self.reading
            return
        yield from super().stream(request)
