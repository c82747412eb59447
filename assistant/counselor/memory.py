"""Conversation memory, persisted per session in the DB.

- recent turns, kept within a token budget measured with the generator's own tokenizer;
- a rolling summary of older turns, itself capped (MAX_SUMMARY_CHARS): when it would grow past the cap, its
  oldest lines are dropped, so it never grows without bound;
- the student profile (assistant.counselor.profile), each value with the turn it came from;
- facts memory: occupations whose facts were fetched during the session, most recent last; the last one is
  the occupation "in focus", which is what "그 직업" refers to;
- the occupations the last answer listed (`shown`: {"occupation_id", "name", "turn"}, in the answer's order),
  which "그 직업" or "두 번째 거" in the next turn may mean instead (assistant/counselor/references.py).
Everything written here is already redacted of personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.retrieval.facts import OccupationFacts
from assistant.counselor.profile import Profile
from assistant.counselor.prompt import Turn
from db.conversation import ChatSession, Message

MAX_SUMMARY_CHARS = 600
MAX_FACTS = 5  # occupations kept in facts memory
KEEP_RECENT_MESSAGES = 8  # messages never folded into the summary
SUMMARY_LINE_CHARS = 90


@dataclass
class Memory:
    session_id: str
    profile: Profile
    summary: str
    summary_upto: int
    facts: list[dict[str, Any]]  # OccupationFacts as dicts + "turn"
    turns: int
    careful: bool
    history: list[Turn] = field(default_factory=list)  # unsummarised messages, oldest first
    shown: list[dict[str, Any]] = field(default_factory=list)  # occupations the last answer listed
    history_seqs: list[int] = field(default_factory=list)

    @property
    def focus(self) -> dict[str, Any] | None:
        return self.facts[-1] if self.facts else None

    def remember(self, facts: Sequence[OccupationFacts], turn: int) -> None:
        """Put occupations into facts memory; the last given becomes the focus."""
        for f in facts:
            self.facts = [x for x in self.facts if x["occupation_id"] != f.occupation_id]
            entry = dict(f.__dict__)
            entry["turn"] = turn
            self.facts.append(entry)
        self.facts = self.facts[-MAX_FACTS:]

    def fact_records(self) -> list[OccupationFacts]:
        names = OccupationFacts.__dataclass_fields__
        out = []
        for f in self.facts:
            data = {k: v for k, v in f.items() if k in names}
            for key in ("certificates", "similar_names", "related"):
                data[key] = tuple(data.get(key) or ())
            out.append(OccupationFacts(**data))
        return out

    def recent(self, count_tokens: Callable[[str], int], budget: int) -> list[Turn]:
        """The newest turns whose text fits `budget` tokens, oldest first."""
        out: list[Turn] = []
        used = 0
        for turn in reversed(self.history):
            cost = count_tokens(turn.text) + 4
            if used + cost > budget:
                break
            out.insert(0, turn)
            used += cost
        return out


def load_memory(s: Session, session: ChatSession) -> Memory:
    rows = s.execute(
        select(Message.seq, Message.role, Message.text)
        .where(Message.session_id == session.id, Message.seq > session.summary_upto)
        .order_by(Message.seq)
    ).all()
    return Memory(
        session_id=session.id,
        profile=Profile.from_json(session.profile),
        summary=session.summary or "",
        summary_upto=session.summary_upto,
        facts=list(session.facts or []),
        turns=session.turns,
        careful=session.careful,
        history=[Turn(r.role, r.text) for r in rows],
        history_seqs=[r.seq for r in rows],
        shown=list(session.shown or []),
    )


def _summary_line(role: str, text: str) -> str:
    who = "학생" if role == "student" else "상담"
    text = " ".join(text.split())
    if len(text) > SUMMARY_LINE_CHARS:
        text = text[: SUMMARY_LINE_CHARS - 1] + "…"
    return f"{who}: {text}"


def fold_summary(memory: Memory) -> bool:
    """Move the oldest messages beyond KEEP_RECENT_MESSAGES into the summary (extractive, capped)."""
    extra = len(memory.history) - KEEP_RECENT_MESSAGES
    if extra <= 0:
        return False
    extra += extra % 2  # fold whole student/counselor pairs
    old, old_seqs = memory.history[:extra], memory.history_seqs[:extra]
    lines = [ln for ln in memory.summary.split("\n") if ln] + [_summary_line(t.role, t.text) for t in old]
    while lines and len("\n".join(lines)) > MAX_SUMMARY_CHARS:
        lines.pop(0)
    memory.summary = "\n".join(lines)
    memory.summary_upto = old_seqs[-1]
    memory.history, memory.history_seqs = memory.history[extra:], memory.history_seqs[extra:]
    return True


def save_memory(session: ChatSession, memory: Memory) -> None:
    session.profile = memory.profile.to_json()
    session.summary = memory.summary
    session.summary_upto = memory.summary_upto
    session.facts = memory.facts
    session.shown = memory.shown
    session.turns = memory.turns
    session.careful = memory.careful
