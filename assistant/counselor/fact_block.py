"""How an occupation's DB facts enter the prompt: `fact_block` is the one rendering of them (the LLM sees it, the
fine-tune data is rendered with it), and `block_fields` reads a block back; both through `ingest.occupation_text`.
"""

from __future__ import annotations

from assistant.counselor.prompt import FactBlock
from assistant.retrieval.facts import OccupationFacts
from ingest.occupation_text import OccupationFields, fact_lines, parse_fact_lines


def fact_block(f: OccupationFacts) -> FactBlock:
    return FactBlock(f.external_id or f"occupation:{f.code}", f.name, str(f.survey_year) if f.survey_year else None,
                     fact_lines(f.fields))


def block_fields(block: FactBlock) -> OccupationFields:
    """The fields of a fact block (the inverse of `fact_block`)."""
    return parse_fact_lines(block.lines)
