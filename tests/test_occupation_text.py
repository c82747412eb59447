"""The occupation text format (ingest/occupation_text.py): what ingest writes into a document and what the prompt's
fact block says read back as the same fields, for real 한국직업사전 records, so the grounded composer and the fact
guard read exactly what was written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.counselor.fact_block import block_fields, fact_block
from assistant.counselor.prompt import Passage, PromptParts
from assistant.generation.factguard import check_answer
from finetune.derive import facts_of
from ingest.chunking import chunk_text
from ingest.jobs import OccupationRecord, parse_record, render_document
from ingest.occupation_text import (
    MAX_LISTED,
    NO_CERTIFICATE,
    OccupationFields,
    document_text,
    fact_lines,
    parse_document,
    parse_fact_lines,
    parse_facts,
)

JOBS = Path(__file__).resolve().parents[1] / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"
CODES = {
    "K000007494": "간호사: one certificate, 14 related occupations (the block shows 8)",
    "K000007463": "웹디자이너: no certificate",
    "K000001349": "고객상담업무관리자: a certificate with a comma inside parentheses",
    "K000002088": "조경공무기술자: the dictionary lists '조경산업기사. 조경기사' as one certificate",
    "K000002654": "웹툰PD: a name that does not end in Hangul",
}


def _raw() -> dict[str, dict]:
    out = {}
    with JOBS.open(encoding="utf-8-sig") as fh:
        for line in fh:
            obj = json.loads(line)
            out[obj["dJobCd"]] = obj
    return out


RAW = _raw()


def _record(code: str, *drop: str) -> OccupationRecord:
    """The record of `code`, without the optionJobInfo fields in `drop` (every record in the data has a level)."""
    obj = json.loads(json.dumps(RAW[code]))
    for key in drop:
        obj["optionJobInfo"].pop(key, None)
    return parse_record(obj)


CASES = [*CODES, ("K000007463", "eduLevel"), ("K000007494", "eduLevel", "skillYear", "certLic", "connectJob")]


def _case(case: str | tuple[str, ...]) -> OccupationRecord:
    return _record(case) if isinstance(case, str) else _record(*case)


@pytest.mark.parametrize("case", CASES)
def test_document_text_round_trips(case: str | tuple[str, ...]) -> None:
    rec = _case(case)
    text = render_document(rec, "x").text
    assert text == document_text(rec.fields) and parse_document(text) == rec.fields
    facts = parse_facts(text)  # the fact sentences alone, as the fact guard reads them from a passage
    assert (facts.education, facts.certificates, facts.related) == (rec.fields.education, rec.certificates, rec.related)


@pytest.mark.parametrize("case", CASES)
def test_fact_block_round_trips(case: str | tuple[str, ...]) -> None:
    facts = facts_of(_case(case))
    block = fact_block(facts)
    shown = replace(facts.fields, similar=facts.similar_names[:MAX_LISTED], related=facts.related[:MAX_LISTED])
    assert block.lines == fact_lines(facts.fields) and block_fields(block) == shown
    assert shown.certificates == facts.certificates and shown.education == facts.education_short
    if not facts.certificates:
        assert f"관련 자격증: {NO_CERTIFICATE}" in block.lines  # said, never left out
    if facts.education_level is None:
        assert not any(line.startswith("학력") for line in block.lines) and shown.education is None


def test_every_record_of_the_dictionary_round_trips() -> None:
    for obj in RAW.values():
        rec = parse_record(obj)
        assert parse_document(document_text(rec.fields)) == rec.fields, rec.code
        f = facts_of(rec).fields
        assert parse_fact_lines(fact_lines(f)) == replace(f, similar=f.similar[:MAX_LISTED], related=f.related[:MAX_LISTED])


def test_passages_cut_from_a_document_keep_their_facts() -> None:
    rec = _record("K000002088")
    chunks = [c.text for c in chunk_text(render_document(rec, "x").text, size=120, overlap=0)]
    found = [parse_facts(c) for c in chunks]
    assert [f.certificates for f in found if f.certificates] == [rec.certificates]
    assert [f.education for f in found if f.education] == ["전문대졸 정도"]
    # the guard takes all of the occupation's certificates as its own, also the one written with ". "
    parts = PromptParts(facts=(fact_block(facts_of(_record("K000007463"))),),
                        passages=tuple(Passage(rec.external_id, rec.name, "2019", c, 0.0) for c in chunks))
    assert check_answer("조경공무기술자 관련 자격증은 조경기사, 자연생태복원기사예요.", parts).ok


def test_unknown_lines_are_ignored_and_absent_ones_stay_unstated() -> None:
    fields = parse_fact_lines(["직업명: 간호사", "연봉: 많이", "학력: 대졸 정도"])
    assert fields == OccupationFields(name="간호사", education="대졸 정도")
    assert fields.certificates is None and fields.certificates_text == ""
    assert parse_facts("간호를 수행한다.") == OccupationFields()
