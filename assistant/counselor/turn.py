"""The counselor: one student turn as a pipeline of named stages, run by `Counselor.stream` in this order.

    stage        what it does                                                          timings_ms key
    receive      normalise and REDACT the message, then load the session's memory      memory
                 (the redacted text is the only form of the message any later stage sees)
    screen       crisis screen of the message and the student's last turns (careful     safety
                 mode lowers the bar); a crisis turn gets the fixed safe script, careful
                 mode and an urgent review, and is stored; a concern turn gets a fixed
                 check-in before its answer and a review
    understand   occupations the turn names, else the one in focus when the student   facts
                 refers back to it; the intent; the retrieval query (the turn + the      (understand: the
                 occupation in play + interests from earlier turns); optionally an LLM   LLM's reading)
                 reads the types and the occupation first (llm_understanding.py)
    update       the dialogue state: profile slots, facts memory                       facts
    retrieve     hybrid search with re-ranking                                         retrieval
    choose       what to answer from: the occupation in focus (an open question's      prompt
                 best match becomes it), fact blocks, passages, recent turns; the
                 prompt within the generator's context budget
    generate     compose (grounded: streamed as written) or generate (an LLM) under     generation
                 the fact guard: each sentence is shown once the answer up to it agrees
                 with the facts and leaks no instructions; at the first that fails the
                 model is stopped and the composed answer finishes the turn
    store        citations, the review reason; both messages and the memory in one     store
                 transaction

`TurnState` carries what the stages produce from one to the next.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assistant.errors import ConcurrentTurn, RetrievalError
from assistant.retrieval.facts import OccupationFacts
from assistant.generation.factguard import SentenceGuard
from assistant.generation.base import GenerationRequest, Generator
from assistant.generation.grounded import GroundedGenerator
from assistant.counselor import review as reasons
from assistant.counselor.citations import citations_for, passage_of
from assistant.counselor.fact_block import fact_block
from assistant.counselor.question_types import classify
from assistant.counselor.references import resolve, shown_by
from assistant.counselor.turn_state import CounselorConfig, TurnResult, TurnState
from assistant.counselor.llm_understanding import LLMTurnReader
from assistant.counselor.understanding import refers_back
from assistant.counselor.memory import Memory, fold_summary, load_memory, save_memory
from assistant.counselor.profile import update_profile, without_self_description
from assistant.counselor.prompt import STOP_SEQUENCES, PromptParts, render_prompt
from ingest.redaction import redact
from assistant.retrieval.hybrid import HybridRetriever
from assistant.safety.crisis import detect_crisis, warm as warm_screen
from assistant.safety.scripts import concern_checkin, concern_lines, crisis_reply, help_lines_for
from assistant.counselor.sessions import get_session
from db.conversation import ChatSession, Message, Review
from db.retry import retrying
from ingest.documents import INVISIBLE
from ingest.embedding import Embedder

MAX_STUDENT_CHARS = 4000
DESCRIBES = ("explore", "certificate", "education", "duties", "related", "how_to_become")  # may describe the occupation
PASSING = ("explore", "certificate", "education", "duties", "how_to_become")  # a name in them may be a side remark
__all__ = ["Counselor", "CounselorConfig", "TurnResult", "TurnState"]


def _set_careful(memory: Memory, _turn_no: int) -> None:
    """A crisis turn's change: careful mode for the rest of the session (nothing ever clears it)."""
    memory.careful = True


def _facts_json(f: OccupationFacts) -> dict:
    return {"external_id": f.external_id, "name": f.name, "education": f.education_short,
            "certificates": list(f.certificates), "related": list(f.related[:8]), "survey_year": f.survey_year}


class Counselor:
    def __init__(self, factory: sessionmaker[Session], retriever: HybridRetriever, generator: Generator,
                 config: CounselorConfig | None = None, *, metrics: Any = None, rng: random.Random | None = None,
                 screen_embedder: Embedder | None = None, reader: LLMTurnReader | None = None) -> None:
        """screen_embedder: the crisis classifier's sentence embedder (e5-small); None screens with rules and
        n-grams alone (`assistant.runtime.screen_embedder` chooses it). reader: an LLM that reads each turn's
        question types and occupation first (`JINRO_UNDERSTANDING=llm`); None: the learned classifier and the
        name lookup alone."""
        self.factory, self.retriever, self.generator = factory, retriever, generator
        self.screen_embedder, self.reader = screen_embedder, reader
        self.config = config or CounselorConfig()
        self.grounded = generator if isinstance(generator, GroundedGenerator) else GroundedGenerator()
        self.metrics = metrics
        self.rng = rng or random.Random()

    # ------------------------------------------------------------------ public
    def warm(self) -> None:
        """Load the indexes and analysers now rather than on the first turn."""
        self.retriever.warm()
        warm_screen(self.screen_embedder)

    def turn(self, session_id: str, text: str, owner: str | None = None) -> TurnResult:
        result = None
        for item in self.stream(session_id, text, owner):
            if isinstance(item, TurnResult):
                result = item
        assert result is not None
        return result

    def stream(self, session_id: str, text: str, owner: str | None = None) -> Iterator[str | TurnResult]:
        """Yields answer pieces as they are generated, then the TurnResult (after the turn is stored).

        The pipeline of the module docstring; `text` goes to `_receive` only, later stages read `turn.text`.
        """
        turn = self._receive(session_id, text, owner)
        turn.lap("memory")
        self._screen(turn)
        turn.lap("safety")
        if turn.assessment.crisis:
            yield from self._crisis_script(turn)
            return
        if turn.preface:
            yield turn.preface
        self._understand(turn)
        if turn.frame is not None:
            turn.lap("understand")
        self._update(turn)
        turn.lap("facts")
        self._retrieve(turn)
        turn.lap("retrieval")
        self._choose(turn)
        turn.lap("prompt")
        if self.generator is self.grounded:  # composed from the DB facts: streamed as written, nothing to guard
            yield from self._generate(turn)
            turn.lap("generation")
        else:  # an LLM: each sentence is shown once the fact guard has passed the answer up to it
            yield from self._generate_guarded(turn)
            turn.lap("generation")
        yield self._store_turn(turn)  # timed as "store" up to the commit

    # ------------------------------------------------------------------ stages, in the order they run
    def _receive(self, session_id: str, text: str, owner: str | None) -> TurnState:
        """Normalise and redact the message first, then load the session's memory."""
        clock = time.perf_counter()
        text = " ".join(INVISIBLE.sub("", text).split())[:MAX_STUDENT_CHARS]
        if not text:
            raise RetrievalError("the message has no visible characters — write what you would like to talk about")
        redacted = redact(text)
        with self.factory() as s:
            session = get_session(s, session_id, owner, idle_timeout=self.config.idle_timeout)
            memory = load_memory(s, session)
        return TurnState(redacted, memory, memory.turns + 1, clock, started=clock)

    def _screen(self, turn: TurnState) -> None:
        earlier = [t.text for t in turn.memory.history if t.role == "student"]
        turn.assessment = detect_crisis(turn.text, careful=turn.memory.careful, context=earlier,
                                        embedder=self.screen_embedder)
        if turn.assessment.level == "concern":
            turn.preface = concern_checkin() + "\n\n"
        if turn.assessment.watch:  # a possible crisis: the rest of the session is screened with care
            turn.memory.careful = True

    def _crisis_script(self, turn: TurnState) -> Iterator[str | TurnResult]:
        """The fixed safe script; the session goes into careful mode and is queued for urgent review."""
        memory = turn.memory
        memory.careful = True
        turn.answer = crisis_reply(turn.assessment.category, handoff=self.config.crisis_handoff)
        for piece in turn.answer.split("\n"):
            yield piece + "\n"
        safety = self._safety(turn.assessment, memory)
        yield self._store(memory, turn.text, turn.answer, [], [], [], safety, turn.timings, "safety-script", None, None,
                          review=reasons.CRISIS, urgent=True, clock=turn.clock, change=_set_careful)

    def _understand(self, turn: TurnState) -> None:
        """The occupations the turn names, else the one in focus when the student refers back to it or asks about
        it; the intent; the retrieval query (built before `_update`, so its interests are from earlier turns)."""
        memory = turn.memory
        turn.intent = classify(turn.text)
        turn.named = self.retriever.lookup_facts(turn.text)
        if self.reader is not None:  # the LLM's types; its occupation (checked against the DB) when none is named
            turn.frame = self.reader.read(turn.text, [t.text for t in memory.history if t.role == "student"])
            turn.intent = "greeting" if turn.frame.types[0] == "chitchat" else turn.frame.types[0]
            if not turn.named and turn.frame.occupation is not None and not refers_back(turn.text):
                turn.named = [turn.frame.occupation]
        turn.facts_now = list(turn.named)
        turn.reference = resolve(turn.text, memory.shown, turn.turn_no, names_one=bool(turn.named))
        if turn.reference is not None:  # one of the occupations the last answer listed, or any of them
            turn.facts_now = self.retriever.facts.facts_for_external_ids(turn.reference.external_ids)
        elif not turn.named and memory.focus is not None and (refers_back(turn.text)
                                                            or turn.intent not in ("explore", "greeting", "other")):
            turn.facts_now = [memory.fact_records()[-1]]
        turn.query, turn.terms = self._query(turn.text, memory, turn.facts_now)

    def _update(self, turn: TurnState) -> None:
        """The dialogue state: the occupations in play into facts memory, profile slots from the redacted text."""
        turn.memory.remember(turn.remembered, turn.turn_no)
        update_profile(turn.memory.profile, turn.text, turn.turn_no, [f.name for f in turn.named])

    def _retrieve(self, turn: TurnState) -> None:
        turn.retrieval = self.retriever.search(turn.query, k=max(self.config.passages, 5), mode="hybrid+facts",
                                               terms=turn.terms,
                                               context=" ".join(t.text for t in turn.memory.history[-2:]))

    def _choose(self, turn: TurnState) -> None:
        """What to answer from: the occupation in focus (for an open question with no occupation in play, the best
        match, which follow-ups then refer to), two more from facts memory, passages, recent turns; the prompt."""
        memory, result = turn.memory, turn.retrieval
        # a turn that describes an occupation without naming it, whether it explores or asks a fact about it ("…하는
        # 사람 되려면 무슨 자격증 따야 돼?"): the confident best match is the occupation in focus, and the answer names it
        # the same when the occupations it names were said in passing ("의사 선생님 도와서 … 주사 놓는 일"): the
        # re-ranker (which weighs a name in the question) still put a described occupation first
        in_passing = bool(turn.named) and self.retriever.reranker is not None and turn.intent in PASSING \
            and bool(result.hits) and not result.hits[0].from_facts
        # but "그거 자격증 뭐야?" with nothing in the conversation to refer to gets a question back, not a guess
        unresolved = refers_back(turn.text) and not turn.facts_now and memory.focus is None
        if (not turn.facts_now or in_passing) and turn.intent in DESCRIBES and result.hits and not unresolved \
                and result.confidence >= self.retriever.embedder.low_similarity:
            turn.facts_now = self.retriever.facts.facts_for_documents([result.hits[0].document_id])
            memory.remember(turn.facts_now, turn.turn_no)
        ask_which = turn.reference is not None and turn.reference.kind == "list"
        records = memory.fact_records()
        focus = records[-1:] if turn.facts_now else []
        others = records[:-1] if turn.facts_now else records
        blocks = tuple(fact_block(f) for f in (turn.facts_now if ask_which else others[-2:] + focus))
        focus_ids = {b.source_id for b in blocks}
        passages = tuple(passage_of(h) for h in result.hits if h.external_id not in focus_ids)[: self.config.passages]
        history = memory.recent(self.generator.count_tokens, self.config.history_budget)
        parts = PromptParts(persona=self.config.persona, profile_lines=memory.profile.lines(), summary=memory.summary,
                            facts=blocks, passages=passages, history=tuple(history), question=turn.text,
                            ask_which=ask_which, asked=turn.frame.types if turn.frame is not None else ())
        rendered = render_prompt(parts, count_tokens=self.generator.count_tokens,
                                 max_context=self.generator.context_window, reserve_for_answer=self.config.max_new_tokens)
        turn.request = GenerationRequest(rendered.text, rendered.parts, self.config.max_new_tokens, STOP_SEQUENCES)

    def _generate(self, turn: TurnState) -> Iterator[str]:
        """Compose or generate the answer, yielding its pieces; `turn.answer` is the whole, once they are all out."""
        pieces: list[str] = []
        for piece in self.generator.stream(turn.request):
            pieces.append(piece)
            yield piece
        turn.answer = "".join(pieces).strip()

    def _generate_guarded(self, turn: TurnState) -> Iterator[str]:
        """An LLM's answer under the fact guard, shown as it passes (`stream_guard`) or only once whole."""
        pieces = self._guarded_pieces(turn)
        if not self.config.stream_guard:
            pieces = iter(["".join(pieces)])
        for piece in pieces:
            if piece:
                turn.first_shown()
                yield piece

    def _guarded_pieces(self, turn: TurnState) -> Iterator[str]:
        """An LLM's answer, sentence by sentence as the fact guard passes the answer up to each one (it must agree
        with the fact blocks and leak no instructions). At the first sentence that fails, the model is stopped and
        the grounded answer finishes the turn: guard "cut" after shown sentences, "replaced" when none had passed."""
        guard = SentenceGuard(turn.request.parts, self.config.persona, self._mention_names)
        pieces = self.generator.stream(turn.request)
        try:
            for piece in pieces:
                yield guard.feed(piece)
                if guard.failed is not None and not self.config.finish_model_answer:
                    break
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # stops the model now (the generators cancel in their `finally`)
        yield guard.finish()
        if guard.failed is None and guard.shown.strip():
            turn.guard, turn.answer = "passed", guard.shown.strip()
            return
        turn.guard, turn.model_answer = ("cut" if guard.shown.strip() else "replaced"), guard.generated
        rest = ("\n\n" if guard.shown.strip() else "") + "".join(self.grounded.stream(turn.request)).strip()
        yield rest
        turn.answer = (guard.shown + rest).strip()
        if self.metrics is not None:
            self.metrics.fact_guard_replaced()

    def _store_turn(self, turn: TurnState) -> TurnResult:
        """The sources the answer used and the review reason, then both messages and the memory (one transaction)."""
        memory, result = turn.memory, turn.retrieval
        citations = [c.to_json() for c in citations_for(turn.answer, turn.request.parts)]
        review = self._review(turn)
        facts_used = [_facts_json(f) for f in (turn.facts_now if turn.reference is not None and turn.reference.kind == "list"
                                                else memory.fact_records()[-1:] if turn.facts_now else [])]
        passages = [passage_of(h).__dict__ for h in result.hits[: self.config.passages]]
        named = [f.name for f in turn.named]

        shown = shown_by(citations_for(turn.answer, turn.request.parts), turn.turn_no)

        def change(m: Memory, turn_no: int) -> None:  # this turn's dialogue state, applied again at store time
            m.remember(turn.remembered, turn_no)
            m.shown = shown
            update_profile(m.profile, turn.text, turn_no, named)
            m.careful = m.careful or turn.assessment.watch  # safety flags only ever get set

        stored = self._store(memory, turn.text, turn.preface + turn.answer, citations, facts_used, passages,
                             self._safety(turn.assessment, memory), turn.timings, self.generator.name,
                             result.confidence, turn.guard, review=review, urgent=False, clock=turn.clock,
                             change=change)
        if turn.model_answer is not None:
            stored.extra["model_answer"] = turn.model_answer  # what the model said, for evaluation; never shown
        if turn.frame is not None:  # what the LLM read in the turn, and what the DB check made of it
            f = turn.frame
            stored.extra["understanding"] = {"types": list(f.types), "source": f.source, "proposed": f.proposed,
                                             "occupation": f.occupation.name if f.occupation else None,
                                             "check": f.check, "ms": f.ms}
        if turn.first_shown_ms is not None:
            stored.extra["first_shown_ms"] = turn.first_shown_ms  # an LLM turn: when the student saw its first text
        return stored

    # ------------------------------------------------------------------ helpers
    def _review(self, turn: TurnState) -> tuple[str, int] | None:
        """Why a counselor should read this answer, with its priority (lower first), or None."""
        if turn.assessment.level == "concern":
            return reasons.CONCERN
        if turn.guard in ("replaced", "cut"):
            return reasons.FACT_GUARD
        if turn.retrieval.confidence < self.retriever.embedder.low_similarity and not turn.facts_now:
            return reasons.LOW_CONFIDENCE
        if self.rng.random() < self.config.review_sample_rate:
            return reasons.SAMPLE
        return None

    def _mention_names(self, text: str) -> list[str]:
        return [m.alias for m in self.retriever.facts.mentions(text)]

    @staticmethod
    def _query(text: str, memory: Memory, facts_now: list[OccupationFacts]) -> tuple[str, tuple[str, ...]]:
        """The retrieval query: the turn without the student's school and grade (most turns: the text the crisis
        screen embedded, so its vector is reused), and the terms added to it: the occupation in play when the turn
        does not name one, else interests."""
        extra = []
        if facts_now and facts_now[-1].name not in text:
            extra.append(facts_now[-1].name)
        interests = memory.profile.values("interests")[-2:]
        if not facts_now and interests:
            extra.extend(interests)
        return without_self_description(text), tuple(extra)

    @staticmethod
    def _safety(assessment, memory: Memory) -> dict:
        lines = help_lines_for(assessment.category) if assessment.crisis else concern_lines(assessment.level)
        return {
            "crisis": assessment.crisis, "level": assessment.level, "category": assessment.category,
            "source": assessment.source, "careful_mode": memory.careful,
            "help_lines": [{"name": h.name, "number": h.number, "description": h.description} for h in lines],
        }

    def _store(self, memory: Memory, student_text: str, answer: str, citations: list[dict], facts_used: list[dict],
               passages: list[dict], safety: dict, timings: dict[str, float], generator: str,
               confidence: float | None, guard: str | None, *, review: tuple[str, int] | None, urgent: bool,
               clock: float, change: Callable[[Memory, int], None]) -> TurnResult:
        """Store both messages and the session's new state in one transaction. `change` applies this turn's
        dialogue state (facts memory, profile, careful mode) to the state as stored *now*: a turn of the same
        session stored since this one began is kept, not overwritten, and safety flags only ever get set."""
        store = retrying((IntegrityError, OperationalError), attempts=5,
                         wait=lambda n: 0.02 * n + self.rng.random() * 0.03)
        try:
            return store(self._store_once, memory, student_text, answer, citations, facts_used, passages, safety,
                         timings, generator, confidence, guard, review, urgent, clock, change)
        except (IntegrityError, OperationalError) as exc:
            raise ConcurrentTurn(
                f"could not store the turn of session {memory.session_id} — please send it again") from exc

    def _store_once(self, memory, student_text, answer, citations, facts_used, passages, safety, timings, generator,
                    confidence, guard, review, urgent, clock, change) -> TurnResult:
        with self.factory() as s:
            # the first statement writes the session row: it takes that row's lock (PostgreSQL) or the database's
            # write lock (SQLite) before anything is read, so the turns of one session are stored one at a time,
            # each on the state the previous one left
            s.execute(update(ChatSession).where(ChatSession.id == memory.session_id)
                      .values(last_active_at=datetime.now(timezone.utc)))
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
            fresh.turns += 1
            change(fresh, fresh.turns)
            fold_summary(fresh)
            save_memory(session, fresh)
            session.urgent = session.urgent or urgent
            memory.__dict__.update(fresh.__dict__)  # the caller's memory is now the stored one
            if review is not None:
                s.add(Review(message_id=counselor.id, reason=review[0], priority=review[1]))
            timings["store"] = round((time.perf_counter() - clock) * 1000, 2)
            counselor.timings = timings
            s.commit()
            if self.metrics is not None:
                self.metrics.turn(safety["crisis"])
            return TurnResult(session.id, counselor.id, answer, citations, facts_used, safety, timings, generator,
                              confidence, guard, review[0] if review else None)
