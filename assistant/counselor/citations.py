"""Which sources an answer used: the fact blocks whose occupation or facts it names and the passages whose title it
names, or the occupation in focus when it names none."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.counselor.fact_block import block_fields
from assistant.counselor.prompt import Passage, PromptParts


@dataclass(frozen=True)
class Citation:
    external_id: str
    title: str
    as_of: str | None

    def to_json(self) -> dict:
        return {"external_id": self.external_id, "title": self.title, "as_of": self.as_of}


def citations_for(answer: str, parts: PromptParts) -> list[Citation]:
    """Sources whose title or fact values the answer uses; the occupation in focus when none is named."""
    out: dict[str, Citation] = {}
    compact_answer = "".join(answer.split())
    for block in parts.facts:
        fields = block_fields(block)
        values = [block.title, ", ".join(fields.certificates or ()), fields.education]
        if any(v and "".join(v.split()) in compact_answer for v in values):
            out[block.source_id] = Citation(block.source_id, block.title, block.as_of)
    for p in parts.passages:
        if "".join(p.title.split()) in compact_answer:
            out.setdefault(p.source_id, Citation(p.source_id, p.title, p.as_of))
    if not out and parts.facts:
        b = parts.facts[-1]
        out[b.source_id] = Citation(b.source_id, b.title, b.as_of)
    return list(out.values())


def passage_of(hit) -> Passage:
    return Passage(hit.external_id, hit.title, hit.as_of, hit.text, hit.score)
