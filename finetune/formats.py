"""The file formats `finetune prepare` reads and writes (documented in docs/finetune.md).

Inputs, one JSON object a line unless said otherwise:
  transcripts  {"session_id", "profile"?: {label: value}, "summary"?: str, "facts"?: [FACT], "turns": [{"role":
               "student"|"counselor", "text"}]}
  reviews      `ReviewExport` (assistant/counselor/review.py; the API's review export): {"session_id", "messages":
               [{"role": "user"|"assistant", "content"}], "facts": [FACT], "source": "approved"|"edited", "profile"?: {...},
               "summary"?: str, "passages"?: [PASSAGE]}
  koalpaca     {"instruction", "input"?, "output"} (a JSON array or JSONL)
  FACT         {"source_id", "title", "as_of": str|null, "lines": [str]};  PASSAGE: FACT's keys with "text", "score"
Output: `SftExample`, one a line in train.jsonl / val.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from assistant.counselor.prompt import PROMPT_FORMAT, PromptParts, Segment, Turn
from assistant.counselor.review import (
    ROLE_ALIASES,
    ReviewExport,
    fact_from_json,
    object_list,
    profile_of,
    required_str,
)
from finetune.errors import DataFormatError, FinetuneError


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


def _records(path: Path, convert) -> Iterator[Conversation | DataFormatError]:
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
        for t in object_list(obj, "turns"):
            role = ROLE_ALIASES.get(t.get("role"))
            if role is None:
                raise ValueError(f"turn role {t.get('role')!r} is not student/counselor")
            turns.append(Turn(role, required_str(t, "text")))
        parts = PromptParts(profile_lines=profile_lines(profile_of(obj)), summary=str(obj.get("summary") or ""),
                            facts=tuple(fact_from_json(f) for f in obj.get("facts") or []))
        return Conversation(required_str(obj, "session_id"), "transcript", parts, _trim(turns), False, {"file": loc})

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
        question = required_str(obj, "instruction").strip()
        extra = str(obj.get("input") or "").strip()
        if extra:
            question = f"{question}\n{extra}"
        count += 1
        turns = (Turn("student", question), Turn("counselor", required_str(obj, "output")))
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
