"""The counselor: one student turn through safety, memory, retrieval, facts, prompt and generation.

Stages (timed per turn): memory (load the session), safety (crisis screen), facts (occupations named now, or
the one in focus when the student refers back), retrieval (query = turn + occupations and interests in play),
prompt (within the generator's context budget), generation (streamed), guard (LLM answers only), store.
A crisis turn gets the fixed safe script, puts the session in careful mode and queues it for urgent review.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assistant.errors import ConcurrentTurn, RetrievalError
from assistant.retrieval.facts import OccupationFacts
from assistant.generation.factguard import check_answer, leaks_instructions
from assistant.generation.base import GenerationRequest, Generator
from assistant.generation.grounded import GroundedGenerator
from assistant.counselor.citations import citations_for, passage_of
from assistant.counselor.fact_block import fact_block
from assistant.counselor.understanding import classify, refers_back
from assistant.counselor.memory import Memory, fold_summary, load_memory, save_memory
from assistant.counselor.profile import update_profile
from assistant.counselor.prompt import DEFAULT_PERSONA, STOP_SEQUENCES, PromptParts, render_prompt
from assistant.safety.redaction import redact
from assistant.retrieval.hybrid import HybridRetriever
from assistant.safety.crisis import crisis_reply, detect_crisis, help_lines_for
from assistant.counselor.sessions import get_session
from db.conversation import Message, Review
from db.retry import retrying

LOW_CONFIDENCE = 0.35  # best dense cosine under this: the DB may not cover the question
MAX_STUDENT_CHARS = 4000


@dataclass
class CounselorConfig:
    persona: str = DEFAULT_PERSONA
    max_new_tokens: int = 256
    passages: int = 4
    review_sample_rate: float = 0.05
    history_budget: int = 600  # tokens of recent turns offered to the prompt (render_prompt may cut more)
    idle_timeout: Any = None  # timedelta | None


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


def _facts_json(f: OccupationFacts) -> dict:
    return {"external_id": f.external_id, "name": f.name, "education": f.education_short,
            "certificates": list(f.certificates), "related": list(f.related[:8]), "survey_year": f.survey_year}


class Counselor:
    def __init__(self, factory: sessionmaker[Session], retriever: HybridRetriever, generator: Generator,
                 config: CounselorConfig | None = None, *, metrics: Any = None, rng: random.Random | None = None) -> None:
        self.factory, self.retriever, self.generator = factory, retriever, generator
        self.config = config or CounselorConfig()
        self.grounded = generator if isinstance(generator, GroundedGenerator) else GroundedGenerator()
        self.metrics = metrics
        self.rng = rng or random.Random()

    # ------------------------------------------------------------------ public
    def warm(self) -> None:
        """Load the indexes and analysers now rather than on the first turn."""
        self.retriever.warm()
        detect_crisis("배고파 죽겠다")

    def turn(self, session_id: str, text: str, owner: str | None = None) -> TurnResult:
        result = None
        for item in self.stream(session_id, text, owner):
            if isinstance(item, TurnResult):
                result = item
        assert result is not None
        return result

    def stream(self, session_id: str, text: str, owner: str | None = None) -> Iterator[str | TurnResult]:
        """Yields answer pieces as they are generated, then the TurnResult (after the turn is stored)."""
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round((now - clock) * 1000, 2)
            clock = now

        text = " ".join(text.split())[:MAX_STUDENT_CHARS]
        if not text:
            raise RetrievalError("the message is empty — write what you would like to talk about")
        with self.factory() as s:
            session = get_session(s, session_id, owner, idle_timeout=self.config.idle_timeout)
            memory = load_memory(s, session)
        turn_no = memory.turns + 1
        lap("memory")

        assessment = detect_crisis(text, careful=memory.careful)
        lap("safety")
        if assessment.crisis:
            memory.careful = True
            answer = crisis_reply(assessment)
            for piece in answer.split("\n"):
                yield piece + "\n"
            safety = self._safety(assessment, memory)
            memory.turns = turn_no
            yield self._store(memory, text, answer, [], [], [], safety, timings, "safety-script", None, None,
                              review=("crisis", 0), urgent=True, clock=clock)
            return

        named = self.retriever.lookup_facts(text)
        facts_now = list(named)
        if not named and memory.focus is not None and (refers_back(text) or classify(text) not in ("explore", "greeting")):
            facts_now = [memory.fact_records()[-1]]
        lap("facts")

        query = self._query(text, memory, facts_now)
        result = self.retriever.search(query, k=max(self.config.passages, 5), mode="hybrid+facts",
                                       context=" ".join(t.text for t in memory.history[-2:]))
        lap("retrieval")
        if not named and not facts_now and classify(text) == "explore" and result.hits and result.confidence >= LOW_CONFIDENCE:
            top = self.retriever.facts.facts_for_documents([result.hits[0].document_id])
            facts_now = top  # the best match becomes the occupation in focus for follow-ups
        memory.remember(facts_now, turn_no)
        update_profile(memory.profile, text, turn_no, [f.name for f in named])
        focus = memory.fact_records()[-1:] if facts_now else []
        others = [f for f in memory.fact_records()[:-1]] if facts_now else memory.fact_records()
        blocks = tuple(fact_block(f) for f in (others[-2:] + focus))
        focus_ids = {b.source_id for b in blocks}
        passages = tuple(passage_of(h) for h in result.hits if h.external_id not in focus_ids)[: self.config.passages]
        history = memory.recent(self.generator.count_tokens, self.config.history_budget)
        parts = PromptParts(persona=self.config.persona, profile_lines=memory.profile.lines(), summary=memory.summary,
                            facts=blocks, passages=passages, history=tuple(history), question=text)
        rendered = render_prompt(parts, count_tokens=self.generator.count_tokens,
                                 max_context=self.generator.context_window, reserve_for_answer=self.config.max_new_tokens)
        lap("prompt")

        request = GenerationRequest(rendered.text, rendered.parts, self.config.max_new_tokens, STOP_SEQUENCES)
        pieces: list[str] = []
        guard = None
        if self.generator is self.grounded:
            for piece in self.generator.stream(request):
                pieces.append(piece)
                yield piece
            answer = "".join(pieces).strip()
            lap("generation")
        else:
            for piece in self.generator.stream(request):
                pieces.append(piece)
            answer = "".join(pieces).strip()
            lap("generation")
            report = check_answer(answer, rendered.parts, self._mention_names)
            leaked = leaks_instructions(answer, self.config.persona)
            guard = "passed" if report.ok and answer and not leaked else "replaced"
            if guard == "replaced":
                model_answer, answer = answer, "".join(self.grounded.stream(request)).strip()
                if self.metrics is not None:
                    self.metrics.fact_guard_replaced()
            lap("guard")
            yield answer
        citations = [c.to_json() for c in citations_for(answer, rendered.parts)]
        review = None
        if guard == "replaced":
            review = ("fact_guard", 2)
        elif result.confidence < LOW_CONFIDENCE and not facts_now:
            review = ("low_confidence", 3)
        elif self.rng.random() < self.config.review_sample_rate:
            review = ("sample", 4)
        memory.turns = turn_no
        stored = self._store(memory, text, answer, citations, [_facts_json(f) for f in memory.fact_records()[-1:] if facts_now],
                          [passage_of(h).__dict__ for h in result.hits[: self.config.passages]],
                          self._safety(assessment, memory), timings, self.generator.name, result.confidence, guard,
                          review=review, urgent=False, clock=clock)
        if guard == "replaced":
            stored.extra["model_answer"] = model_answer  # what the model said, for evaluation; never shown
        yield stored

    # ------------------------------------------------------------------ helpers
    def _mention_names(self, text: str) -> list[str]:
        return [m.alias for m in self.retriever.facts.mentions(text)]

    @staticmethod
    def _query(text: str, memory: Memory, facts_now: list[OccupationFacts]) -> str:
        """The retrieval query: the turn, plus the occupation in play when the turn does not name one, plus interests."""
        extra = []
        if facts_now and facts_now[-1].name not in text:
            extra.append(facts_now[-1].name)
        interests = memory.profile.values("interests")[-2:]
        if not facts_now and interests:
            extra.extend(interests)
        return " ".join([text, *extra])

    @staticmethod
    def _safety(assessment, memory: Memory) -> dict:  # noqa: ANN001
        lines = help_lines_for(assessment.category) if assessment.crisis else ()
        return {
            "crisis": assessment.crisis, "category": assessment.category, "careful_mode": memory.careful,
            "help_lines": [{"name": h.name, "number": h.number, "description": h.description} for h in lines],
        }

    def _store(self, memory: Memory, student_text: str, answer: str, citations: list[dict], facts_used: list[dict],
               passages: list[dict], safety: dict, timings: dict[str, float], generator: str,
               confidence: float | None, guard: str | None, *, review: tuple[str, int] | None, urgent: bool,
               clock: float) -> TurnResult:
        store = retrying((IntegrityError, OperationalError), attempts=5,
                         wait=lambda n: 0.02 * n + self.rng.random() * 0.03)
        try:
            return store(self._store_once, memory, student_text, answer, citations, facts_used, passages, safety,
                         timings, generator, confidence, guard, review, urgent, clock)
        except (IntegrityError, OperationalError) as exc:
            raise ConcurrentTurn(
                f"could not store the turn of session {memory.session_id} — please send it again") from exc

    def _store_once(self, memory, student_text, answer, citations, facts_used, passages, safety, timings, generator,  # noqa: ANN001
                    confidence, guard, review, urgent, clock) -> TurnResult:
        with self.factory() as s:
            session = get_session(s, memory.session_id, None)
            seq = (s.scalar(select(func.max(Message.seq)).where(Message.session_id == session.id)) or 0) + 1
            student = Message(session_id=session.id, seq=seq, role="student", text=redact(student_text), safety=safety)
            timings = dict(timings)
            counselor = Message(session_id=session.id, seq=seq + 1, role="counselor", text=redact(answer),
                                generator=generator, citations=citations, facts_used=facts_used,
                                passages_used=passages, safety=safety, timings=timings,
                                retrieval_confidence=confidence, fact_guard=guard)
            s.add_all([student, counselor])
            s.flush()
            fresh = load_memory(s, session)
            memory.history, memory.history_seqs = fresh.history, fresh.history_seqs
            memory.summary_upto = max(memory.summary_upto, fresh.summary_upto)
            fold_summary(memory)
            save_memory(session, memory)
            session.urgent = session.urgent or urgent
            session.last_active_at = datetime.now(timezone.utc)
            if review is not None:
                s.add(Review(message_id=counselor.id, reason=review[0], priority=review[1]))
            timings["store"] = round((time.perf_counter() - clock) * 1000, 2)
            counselor.timings = timings
            s.commit()
            if self.metrics is not None:
                self.metrics.turn(safety["crisis"])
            return TurnResult(session.id, counselor.id, answer, citations, facts_used, safety, timings, generator,
                              confidence, guard, review[0] if review else None)
