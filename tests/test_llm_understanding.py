"""LLM turn understanding: the reply parser, the DB check of a proposed occupation, and the counselor using the
frame (a scripted LLM over a real knowledge DB)."""

from __future__ import annotations

import pytest

from assistant.counselor.llm_understanding import LLMTurnReader, agrees, parse_reply
from assistant.counselor.sessions import create_session
from assistant.counselor.turn import Counselor, CounselorConfig
from assistant.errors import GenerationError
from assistant.generation.grounded import GroundedGenerator
from assistant.runtime import build_runtime
from tests.support.generators import ReadingGenerator
from tests.support.knowledge_base import KB, build_kb, retrieval_lines


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"types": ["certificate"], "occupation": "간호사"}', (("certificate",), "간호사")),
    ('```json\n{"types": ["salary_outlook", "Education"], "occupation": null}\n```', (("salary", "education"), None)),
    ('{"types": "fit", "occupation": "null"}', (("fit",), None)),
    ('{"types": ["astrology", "duties", "duties"], "occupation": "  웹  디자이너 "}', (("duties",), "웹 디자이너")),
    ("잘 모르겠어요", ((), None)),
    ('{"types": [oops}', ((), None)),
    ('[1, 2] {"types": ["related"]}', (("related",), None)),
])
def test_parse_reply(reply: str, expected) -> None:
    assert parse_reply(reply) == expected


def test_a_proposed_name_agrees_only_with_itself_or_a_containing_name() -> None:
    assert agrees("웹 디자이너", "웹디자이너") and agrees("간호사", "전문간호사")
    assert not agrees("간호사", "간호조무사") and not agrees("의", "의사")


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = build_kb(tmp_path_factory.mktemp("llm-understanding-kb"), embedder, retrieval_lines(120), keep_open=True)
    yield kb
    kb.close()


def counselor(kb: KB, embedder, gen: ReadingGenerator, **config) -> Counselor:
    retriever = kb.retriever(embedder, check_every=0)
    reader = LLMTurnReader(gen, lookup=retriever.lookup_facts, search=retriever.search,
                           facts_of=retriever.facts.facts_for_documents)
    return Counselor(kb.knowledge.factory, retriever, gen, CounselorConfig(**config), reader=reader)


def turn(c: Counselor, text: str):
    return c.turn(create_session(c.factory, "t").id, text, owner="t")


def test_the_llm_names_a_described_occupation_and_the_db_confirms_it(kb: KB, embedder) -> None:
    gen = ReadingGenerator("간호사가 되려면 간호사 면허가 필요해요.",
                           '{"types": ["certificate"], "occupation": "간호사"}')
    c = counselor(kb, embedder, gen)
    result = turn(c, "병원에서 아픈 사람 돌보고 주사 놓는 일 하려면 뭐 따야 돼?")
    assert result.extra["understanding"] == {"types": ["certificate"], "source": "llm", "proposed": "간호사",
                                             "occupation": "간호사", "check": "alias",
                                             "ms": result.extra["understanding"]["ms"]}
    assert result.facts_used[0]["name"] == "간호사" and result.fact_guard == "passed"
    assert "understand" in result.timings_ms
    assert gen.readings[0].parts.question == "병원에서 아픈 사람 돌보고 주사 놓는 일 하려면 뭐 따야 돼?"


def test_an_occupation_the_db_does_not_know_is_not_used(kb: KB, embedder) -> None:
    gen = ReadingGenerator("좋은 질문이에요.", '{"types": ["duties"], "occupation": "우주해적선장"}')
    result = turn(counselor(kb, embedder, gen), "우주에서 배 타고 다니는 사람은 뭐 해?")
    frame = result.extra["understanding"]
    assert frame["check"] == "not in the DB" and frame["occupation"] is None
    assert all(f["name"] != "우주해적선장" for f in result.facts_used)


def test_a_reply_without_types_leaves_them_to_the_classifier(kb: KB, embedder) -> None:
    gen = ReadingGenerator("간호사가 되려면 간호사 면허가 필요해요.", "모르겠어요")
    result = turn(counselor(kb, embedder, gen), "간호사 되려면 자격증 필요해?")
    assert result.extra["understanding"]["source"] == "classifier"
    assert result.extra["understanding"]["types"][0] == "certificate"
    assert result.facts_used[0]["name"] == "간호사"  # the name lookup still ran


def test_the_llm_types_reach_the_grounded_answer(kb: KB, embedder) -> None:
    # the model's answer fails the guard, so the grounded composer answers: with the LLM's types, not its own
    gen = ReadingGenerator("간호사는 우주비행기사 자격증이 필요해요.", '{"types": ["education"], "occupation": "간호사"}')
    result = turn(counselor(kb, embedder, gen), "간호사 어때?")
    assert result.fact_guard == "replaced"
    assert "학력" in result.answer or "대졸" in result.answer


def test_llm_understanding_needs_an_llm(tmp_path) -> None:
    with pytest.raises(GenerationError, match="JINRO_UNDERSTANDING=llm needs an LLM generator"):
        build_runtime(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "index", "e5-small", GroundedGenerator(),
                      understanding="llm")


def test_a_buffered_guard_shows_the_answer_only_once_it_is_whole(kb: KB, embedder) -> None:
    answer = "간호사가 되려면 간호사 면허가 필요해요. 보통 대졸 정도의 학력이 필요해요."
    gen = ReadingGenerator(answer, '{"types": ["certificate"], "occupation": "간호사"}')
    c = counselor(kb, embedder, gen, stream_guard=False)
    stream = c.stream(create_session(c.factory, "t").id, "간호사가 되려면 자격증이 필요해?", owner="t")
    first = next(stream)
    assert first == answer and gen.closed  # nothing was shown before the model had finished
    (result,) = list(stream)
    assert result.fact_guard == "passed" and result.extra["first_shown_ms"] > 0


def test_further_types_stand_only_where_the_classifier_asks_them_too() -> None:
    def read(text: str, reply: str) -> tuple[str, ...]:
        return LLMTurnReader(ReadingGenerator("", reply), lookup=lambda _: []).read(text).types

    listed = '{"types": ["certificate", "education", "salary", "fit"], "occupation": null}'
    assert read("간호사 되려면 자격증이랑 대학 어디 나와야 돼?", listed) == ("certificate", "education")
    assert read("간호사 되려면 자격증 필요해?", listed) == ("certificate",)
    # the main type is the LLM's even where the classifier reads another
    assert read("간호사 되려면 자격증 필요해?", '{"types": ["duties"]}') == ("duties",)
