"""What one counselor turn carries: its configuration (`CounselorConfig`), the state its stages fill in order
(`TurnState`, see the stage table in turn.py) and what it returns (`TurnResult`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from assistant.counselor.llm_understanding import TurnFrame
from assistant.counselor.memory import Memory
from assistant.counselor.prompt import DEFAULT_PERSONA
from assistant.counselor.references import Reference
from assistant.generation.base import GenerationRequest
from assistant.retrieval.facts import OccupationFacts
from assistant.retrieval.hybrid import RetrievalResult
from assistant.safety.crisis import CrisisAssessment


@dataclass
class CounselorConfig:
    persona: str = DEFAULT_PERSONA
    max_new_tokens: int = 256
    passages: int = 4
    review_sample_rate: float = 0.05
    history_budget: int = 600  # tokens of recent turns offered to the prompt (render_prompt may cut more)
    idle_timeout: Any = None  # timedelta | None
    crisis_handoff: str | None = None  # who is notified of a crisis and how (JINRO_CRISIS_HANDOFF); None: nobody
    # evaluation only: after the fact guard stopped showing an LLM's answer, let the model finish it anyway, so the
    # stored `model_answer` is what it would have said (a turn then costs the whole generation)
    finish_model_answer: bool = False
    # an LLM's answer is shown sentence by sentence as the fact guard passes it (True), or only once it is whole and
    # checked (False: the behaviour before the streaming guard, kept for deployments that want whole answers and for
    # bench/turn_bench.py's before/after)
    stream_guard: bool = True


@dataclass
class TurnResult:
    session_id: str
    message_id: int
    answer: str
    citations: list[dict]
    facts_used: list[dict]
    safety: dict
    timings_ms: dict[str, float]
    generator: str
    retrieval_confidence: float | None
    fact_guard: str | None
    review: str | None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "session_id": self.session_id, "message_id": self.message_id, "answer": self.answer,
            "citations": self.citations, "facts_used": self.facts_used, "safety": self.safety,
            "timings_ms": self.timings_ms, "generator": self.generator,
            "retrieval_confidence": self.retrieval_confidence, "fact_guard": self.fact_guard, "review": self.review,
        }


@dataclass
class TurnState:
    """What the stages of one turn produce, filled in the order they run (each field names its stage)."""

    text: str  # receive: the student's message, normalised and redacted; no stage ever sees the raw text
    memory: Memory  # receive; changed by screen (careful mode), update, choose and store
    turn_no: int  # receive
    clock: float  # perf_counter at the end of the last timed stage
    timings: dict[str, float] = field(default_factory=dict)
    assessment: CrisisAssessment | None = None  # screen
    preface: str = ""  # screen: the fixed check-in a concern turn's answer starts with
    intent: str = "explore"  # understand
    named: list[OccupationFacts] = field(default_factory=list)  # understand: occupations the message names
    facts_now: list[OccupationFacts] = field(default_factory=list)  # understand, choose: what the answer is about
    reference: Reference | None = None  # understand: what "그 직업" / "두 번째 거" means among the listed occupations
    query: str = ""  # understand: the turn without the student's self-description
    terms: tuple[str, ...] = ()  # understand: added to the query (the occupation in play, interests)
    frame: TurnFrame | None = None  # understand: the LLM's reading of the turn, when one is configured
    retrieval: RetrievalResult | None = None  # retrieve
    request: GenerationRequest | None = None  # choose: the rendered prompt and the parts it was rendered from
    answer: str = ""  # generate: what the student saw
    guard: str | None = None  # generate, an LLM's: "passed" | "cut" (the grounded answer finished it) | "replaced"
    model_answer: str | None = None  # generate: what the LLM generated when the guard stopped it; never shown
    first_shown_ms: float | None = None  # generate, an LLM's: ms from the turn's start to the first text shown
    started: float = field(default_factory=time.perf_counter)

    @property
    def remembered(self) -> list[OccupationFacts]:
        """The occupations this turn puts into facts memory: none when it asked about any of a list (the student
        has not said which one they mean yet)."""
        return [] if self.reference is not None and self.reference.kind == "list" else self.facts_now

    def first_shown(self) -> None:
        if self.first_shown_ms is None:
            self.first_shown_ms = round((time.perf_counter() - self.started) * 1000, 2)

    def lap(self, stage: str) -> None:
        """Record the time since the last lap under `stage`."""
        now = time.perf_counter()
        self.timings[stage] = round((now - self.clock) * 1000, 2)
        self.clock = now
