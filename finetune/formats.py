"""The file formats `finetune prepare` reads and writes (documented in docs/finetune.md).

Inputs, one JSON object a line unless said otherwise:
  transcripts  {"session_id", "profile"?: {label: value}, "summary"?: str, "facts"?: [FACT], "turns": [{"role":
               "student"|"counselor", "text"}]}
  reviews      `ReviewExport`: {"session_id", "messages": [{"role": "user"|"assistant", "content"}], "facts": [FACT],
               "source": "approved"|"edited", "profile"?: {...}, "summary"?: str, "passages"?: [PASSAGE]}
  koalpaca     {"instruction", "input"?, "output"} (a JSON array or JSONL)
  FACT         {"source_id", "title", "as_of": str|null, "lines": [str]};  PASSAGE: FACT's keys with "text", "score"
Output: `SftExample`, one a line in train.jsonl / val.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from assistant.counselor.prompt import PROMPT_FORMAT, FactBlock, Passage, PromptParts, Segment, Turn
from finetune.errors import DataFormatError, FinetuneError

ROLE_ALIASES = {"user": "student", "student": "student", "assistant": "counselor", "counselor": "counselor"}


@dataclass(frozen=True)
class Conversation:
    """One session, normalised from any source, before rendering: context + turns (the last one a counselor's)."""

    session_id: str
    source: str  # transcript | koalpaca | review:approved | review:edited | derived:job | chitchat
    parts: PromptParts  # persona and context; history/question unused
    turns: tuple[Turn, ...]
    derived: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)


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
        for m in _list(obj, "messages"):
            role = m.get("role")
            if role == "system":
                continue
            if role not in ("user", "assistant", "student", "counselor"):
                raise ValueError(f"message role {role!r} is not user/assistant")
            messages.append(ReviewMessage("user" if ROLE_ALIASES[role] == "student" else "assistant", _str(m, "content")))
        return cls(
            session_id=_str(obj, "session_id"), messages=tuple(messages), source=source,
            facts=tuple(fact_from_json(f) for f in obj.get("facts") or []),
            profile=_profile(obj), summary=str(obj.get("summary") or ""),
            passages=tuple(passage_from_json(p) for p in obj.get("passages") or []),
        )


@dataclass(frozen=True)
class SftExample:
    """One rendered training conversation; only `trainable` segments (counselor turns + EOS) carry loss."""

    id: str
    session_id: str
    source: str
    derived: bool
    provenance: dict[str, Any]
    segments: tuple[Segment, ...]
    tokens: int  # in `token_unit` of stats.json: tokens of --tokenizer, or characters
    truncated_turns: int = 0
    prompt_format: str = PROMPT_FORMAT

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @staticmethod
    def hash_text(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "session_id": self.session_id, "source": self.source, "derived": self.derived,
            "provenance": self.provenance, "prompt_format": self.prompt_format, "tokens": self.tokens,
            "truncated_turns": self.truncated_turns,
            "segments": [{"text": s.text, "trainable": s.trainable} for s in self.segments],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SftExample":
        return cls(
            id=obj["id"], session_id=obj["session_id"], source=obj["source"], derived=bool(obj.get("derived")),
            provenance=obj.get("provenance") or {}, tokens=int(obj.get("tokens", 0)),
            truncated_turns=int(obj.get("truncated_turns", 0)), prompt_format=obj.get("prompt_format", ""),
            segments=tuple(Segment(s["text"], bool(s["trainable"])) for s in obj["segments"]),
        )


# ---------------------------------------------------------------- field helpers

def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} must be a non-empty string")
    return value


def _list(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise ValueError(f"field {key!r} must be a list of objects")
    return value


def _profile(obj: dict[str, Any]) -> dict[str, str]:
    profile = obj.get("profile") or {}
    if not isinstance(profile, dict):
        raise ValueError("field 'profile' must be an object {label: value}")
    return {str(k): ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in profile.items() if v}


def fact_from_json(obj: dict[str, Any]) -> FactBlock:
    lines = obj.get("lines") or []
    if not isinstance(lines, list):
        raise ValueError("a fact's 'lines' must be a list of strings")
    as_of = obj.get("as_of")
    return FactBlock(_str(obj, "source_id"), str(obj.get("title") or ""), str(as_of) if as_of else None,
                     tuple(str(x) for x in lines))


def fact_to_json(block: FactBlock) -> dict[str, Any]:
    return {"source_id": block.source_id, "title": block.title, "as_of": block.as_of, "lines": list(block.lines)}


def passage_from_json(obj: dict[str, Any]) -> Passage:
    as_of = obj.get("as_of")
    return Passage(_str(obj, "source_id"), str(obj.get("title") or ""), str(as_of) if as_of else None,
                   _str(obj, "text"), float(obj.get("score") or 0.0))


def profile_lines(profile: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{k}: {v}" for k, v in profile.items())


# ---------------------------------------------------------------- readers

def read_json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]] | DataFormatError]:
    """(location, object) for every record of a JSONL file, or of a JSON array file; bad lines as errors."""
    if not path.is_file():
        raise FinetuneError(f"{path}: no such file")
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
        fh.seek(0)
        if head == "[":
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise FinetuneError(f"{path}: invalid JSON array ({exc.msg} at line {exc.lineno})") from exc
            for i, obj in enumerate(data):
                yield (f"{path}:[{i}]", obj) if isinstance(obj, dict) else DataFormatError(f"{path}:[{i}]", "not an object")
            return
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield DataFormatError(f"{path}:{lineno}", f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            yield (f"{path}:{lineno}", obj) if isinstance(obj, dict) else DataFormatError(f"{path}:{lineno}", "not an object")


def _records(path: Path, convert) -> Iterator[Conversation | DataFormatError]:  # noqa: ANN001
    for item in read_json_records(path):
        if isinstance(item, DataFormatError):
            yield item
            continue
        loc, obj = item
        try:
            conv = convert(obj, loc)
        except (KeyError, TypeError, ValueError) as exc:
            yield DataFormatError(loc, str(exc))
            continue
        if conv is not None:
            yield conv


def _trim(turns: list[Turn]) -> tuple[Turn, ...]:
    """Turns from the first student turn to the last counselor turn (the format needs a question first)."""
    while turns and turns[0].role != "student":
        turns = turns[1:]
    while turns and turns[-1].role != "counselor":
        turns = turns[:-1]
    if not turns:
        raise ValueError("no student turn followed by a counselor turn")
    return tuple(turns)


def read_transcripts(path: Path) -> Iterator[Conversation | DataFormatError]:
    def convert(obj: dict[str, Any], loc: str) -> Conversation:
        turns = []
        for t in _list(obj, "turns"):
            role = ROLE_ALIASES.get(t.get("role"))
            if role is None:
                raise ValueError(f"turn role {t.get('role')!r} is not student/counselor")
            turns.append(Turn(role, _str(t, "text")))
        parts = PromptParts(profile_lines=profile_lines(_profile(obj)), summary=str(obj.get("summary") or ""),
                            facts=tuple(fact_from_json(f) for f in obj.get("facts") or []))
        return Conversation(_str(obj, "session_id"), "transcript", parts, _trim(turns), False, {"file": loc})

    return _records(path, convert)


def read_reviews(path: Path) -> Iterator[Conversation | DataFormatError]:
    def convert(obj: dict[str, Any], loc: str) -> Conversation:
        r = ReviewExport.from_json(obj)
        turns = [Turn("student" if m.role == "user" else "counselor", m.content) for m in r.messages]
        parts = PromptParts(profile_lines=profile_lines(r.profile), summary=r.summary, facts=r.facts,
                            passages=r.passages)
        return Conversation(f"review:{r.session_id}", f"review:{r.source}", parts, _trim(turns), False, {"file": loc})

    return _records(path, convert)


def read_koalpaca(path: Path, limit: int | None = None) -> Iterator[Conversation | DataFormatError]:
    count = 0

    def convert(obj: dict[str, Any], loc: str) -> Conversation | None:
        nonlocal count
        if limit is not None and count >= limit:
            return None
        question = _str(obj, "instruction").strip()
        extra = str(obj.get("input") or "").strip()
        if extra:
            question = f"{question}\n{extra}"
        count += 1
        turns = (Turn("student", question), Turn("counselor", _str(obj, "output")))
        return Conversation(f"koalpaca:{loc.rsplit(':', 1)[-1]}", "koalpaca", PromptParts(), turns, False,
                            {"file": loc, "url": obj.get("url")} if obj.get("url") else {"file": loc})

    return _records(path, convert)


def read_examples(path: Path) -> list[SftExample]:
    """train.jsonl / val.jsonl as written by `finetune prepare`."""
    out = []
    for item in read_json_records(path):
        if isinstance(item, DataFormatError):
            raise FinetuneError(f"{item} — regenerate the file with `finetune prepare`")
        loc, obj = item
        try:
            out.append(SftExample.from_json(obj))
        except (KeyError, TypeError, ValueError) as exc:
            raise FinetuneError(f"{loc}: not an SFT example ({exc}) — regenerate it with `finetune prepare`") from exc
    if not out:
        raise FinetuneError(f"{path}: no examples — run `finetune prepare` with at least one input")
    return out
