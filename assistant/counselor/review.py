"""Counselor review: why an answer is queued for a counselor, and the records reviewed answers are exported as.

Review reasons, in the order a counselor sees them (lower priority first):

    CRISIS (0)  CONCERN (1)  NEGATIVE_FEEDBACK (1)  FACT_GUARD (2)  LOW_CONFIDENCE (3)  SAMPLE (4)

(CONCERN: a distressed student got the check-in before the answer; a counselor may want to reach out.)

Each is a `ReviewReason(reason, priority)`, the two columns of a `Review` row; an answer is queued once, and a
later reason replaces a pending one only when its priority is higher (a lower number).

Exports (docs/finetune.md), written by the API (`/v1/review/export/...`) and read by `finetune prepare`:
  `ReviewExport`   an approved or edited answer with its conversation and context (SFT data)
  `PreferencePair` an edited answer: chosen = the counselor's text, rejected = the original
  FACT             {"source_id", "title", "as_of": str|null, "lines": [str]};  PASSAGE: FACT's keys with "text", "score"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from assistant.counselor.prompt import FactBlock, Passage


class ReviewReason(NamedTuple):
    reason: str  # Review.reason
    priority: int  # Review.priority: lower is reviewed first


CRISIS = ReviewReason("crisis", 0)
CONCERN = ReviewReason("concern", 1)
NEGATIVE_FEEDBACK = ReviewReason("negative_feedback", 1)
FACT_GUARD = ReviewReason("fact_guard", 2)
LOW_CONFIDENCE = ReviewReason("low_confidence", 3)
SAMPLE = ReviewReason("sample", 4)
REVIEW_REASONS = (CRISIS, CONCERN, NEGATIVE_FEEDBACK, FACT_GUARD, LOW_CONFIDENCE, SAMPLE)  # in priority order

ROLE_ALIASES = {"user": "student", "student": "student", "assistant": "counselor", "counselor": "counselor"}


# ---------------------------------------------------------------- field helpers (every JSON record format)

def required_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} must be a non-empty string")
    return value


def object_list(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise ValueError(f"field {key!r} must be a list of objects")
    return value


def profile_of(obj: dict[str, Any]) -> dict[str, str]:
    profile = obj.get("profile") or {}
    if not isinstance(profile, dict):
        raise ValueError("field 'profile' must be an object {label: value}")
    return {str(k): ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in profile.items() if v}


def fact_from_json(obj: dict[str, Any]) -> FactBlock:
    lines = obj.get("lines") or []
    if not isinstance(lines, list):
        raise ValueError("a fact's 'lines' must be a list of strings")
    as_of = obj.get("as_of")
    return FactBlock(required_str(obj, "source_id"), str(obj.get("title") or ""), str(as_of) if as_of else None,
                     tuple(str(x) for x in lines))


def fact_to_json(block: FactBlock) -> dict[str, Any]:
    return {"source_id": block.source_id, "title": block.title, "as_of": block.as_of, "lines": list(block.lines)}


def passage_from_json(obj: dict[str, Any]) -> Passage:
    as_of = obj.get("as_of")
    return Passage(required_str(obj, "source_id"), str(obj.get("title") or ""), str(as_of) if as_of else None,
                   required_str(obj, "text"), float(obj.get("score") or 0.0))


# ---------------------------------------------------------------- export records

@dataclass(frozen=True)
class ReviewMessage:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class ReviewExport:
    """One reviewed conversation exported by the API for fine-tuning (one JSON object a line).

    `source` is "approved" (the assistant's answers were kept as they were) or "edited" (a counselor rewrote them;
    the messages hold the rewritten text). `facts`/`passages`/`profile`/`summary` are the context the answers were
    given with, exactly as it was in `GenerationRequest.parts` (rendered.parts) of the last turn.
    """

    session_id: str
    messages: tuple[ReviewMessage, ...]
    facts: tuple[FactBlock, ...]
    source: Literal["approved", "edited"]
    profile: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    passages: tuple[Passage, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id, "source": self.source,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "facts": [fact_to_json(f) for f in self.facts],
            "profile": dict(self.profile), "summary": self.summary,
            "passages": [{**fact_to_json(FactBlock(p.source_id, p.title, p.as_of, ())), "text": p.text, "score": p.score}
                         for p in self.passages],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ReviewExport":
        source = obj.get("source")
        if source not in ("approved", "edited"):
            raise ValueError(f"source is {source!r}; only 'approved' and 'edited' conversations are exported")
        messages = []
        for m in object_list(obj, "messages"):
            role = m.get("role")
            if role == "system":
                continue
            if role not in ("user", "assistant", "student", "counselor"):
                raise ValueError(f"message role {role!r} is not user/assistant")
            messages.append(ReviewMessage("user" if ROLE_ALIASES[role] == "student" else "assistant",
                                          required_str(m, "content")))
        return cls(
            session_id=required_str(obj, "session_id"), messages=tuple(messages), source=source,
            facts=tuple(fact_from_json(f) for f in obj.get("facts") or []),
            profile=profile_of(obj), summary=str(obj.get("summary") or ""),
            passages=tuple(passage_from_json(p) for p in obj.get("passages") or []),
        )


@dataclass(frozen=True)
class PreferencePair:
    """An edited answer as a preference pair: `chosen` is the counselor's text, `rejected` the original answer;
    `messages` the user/assistant context before it and `prompt` the student's turn it answers."""

    session_id: str
    review_id: int
    prompt: str
    messages: tuple[ReviewMessage, ...]
    chosen: str
    rejected: str

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "review_id": self.review_id, "prompt": self.prompt,
                "messages": [{"role": m.role, "content": m.content} for m in self.messages],
                "chosen": self.chosen, "rejected": self.rejected}
