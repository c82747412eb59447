"""Back-references against the dialogue state: the occupations the last answer listed ("그 직업" after a list gets
the asked type for each of them and a question which one; "두 번째 거" picks one), and a reference with nothing to
refer to (a clarifying question, never a guessed occupation). Unit level and through the counselor on a real DB."""

from __future__ import annotations

import pytest

from assistant.counselor.citations import Citation
from assistant.counselor.references import ordinal, resolve, shown_by
from tests.support.knowledge_base import KB, build_kb, retrieval_lines
from tests.test_counselor import make, talk

LISTED = [{"external_id": f"job:K{i}", "title": t, "turn": 1} for i, t in enumerate(("가", "나", "다"))]


@pytest.mark.parametrize(("text", "place"), [("두 번째 거 자격증은?", 1), ("첫번째 직업 연봉", 0), ("2번 하는 일", 1),
                                             ("마지막 거는?", -1), ("세째", None), ("그 직업 자격증", None)])
def test_ordinals(text: str, place: int | None) -> None:
    assert ordinal(text) == place


def test_resolve_against_the_list_of_the_previous_answer_only() -> None:
    assert resolve("두 번째 거 자격증은?", LISTED, 2, names_one=False).external_ids == ("job:K1",)
    listed = resolve("그 직업은 자격증 필요해?", LISTED, 2, names_one=False)
    assert listed.kind == "list" and listed.external_ids == ("job:K0", "job:K1", "job:K2")
    assert resolve("그 직업은 자격증 필요해?", LISTED, 3, names_one=False) is None  # the list is two answers old
    assert resolve("간호사 자격증은? 그거 말고", LISTED, 2, names_one=True) is None  # it names its own occupation
    assert resolve("다섯 번째 거", LISTED, 2, names_one=False) is None
    assert resolve("자격증 뭐 필요해?", LISTED, 2, names_one=False) is None  # no reference at all


def test_an_answer_about_one_occupation_lists_nothing() -> None:
    one = [Citation("job:K1", "가", None), Citation("doc:x", "안내", None)]
    assert shown_by(one, 4) == []
    two = [Citation("job:K1", "가", None), Citation("job:K2", "나", None)]
    assert [s["title"] for s in shown_by(two, 4)] == ["가", "나"] and shown_by(two, 4)[0]["turn"] == 4


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = build_kb(tmp_path_factory.mktemp("references-kb"), embedder, retrieval_lines(120), keep_open=True)
    yield kb
    kb.close()


def test_after_a_list_the_reference_is_answered_for_each_then_one_is_picked(kb: KB, embedder) -> None:
    c = make(kb, embedder)
    _, (listing, each, picked) = talk(c, "동물을 돌보는 일이 좋아요. 어떤 직업이 있을까요?", "그 직업은 자격증이 필요해요?",
                                      "두 번째 거 학력은?")
    titles = [cit["title"] for cit in listing.citations]
    assert len(titles) >= 2, listing.answer
    for title in titles[:3]:
        assert title in each.answer
    assert "어느 직업" in each.answer and "자격증" in each.answer
    assert [f["name"] for f in each.facts_used] == titles[:3]
    assert titles[1] in picked.answer and titles[0] not in picked.answer and "학력" in picked.answer
    assert titles[1] in [cit["title"] for cit in picked.citations]
    assert [f["name"] for f in picked.facts_used] == [titles[1]]


def test_a_reference_with_nothing_to_refer_to_gets_a_question(kb: KB, embedder) -> None:
    c = make(kb, embedder)
    _, (first,) = talk(c, "그거 자격증 뭐야?")
    assert "어떤 직업" in first.answer and first.citations == [] and first.facts_used == []


@pytest.mark.parametrize("text", ["!!!", "ㅋㅋㅋㅋ", "🙂", "간호사 job 연봉 어때요? salary", "가" * 2000,
                                  "간호사랑 웹디자이너 중에 자격증은 뭐가 필요해?"])
def test_bad_turns_get_an_answer_and_never_an_unnamed_occupation_as_fact(kb: KB, embedder, text: str) -> None:
    c = make(kb, embedder)
    _, (result,) = talk(c, text)
    assert result.answer.strip()
    named = {"간호사", "웹디자이너"} & set(text.replace("랑", " ").split())
    if named:  # facts only about what the turn names
        assert {f["name"] for f in result.facts_used} <= named
        assert any(n in result.answer for n in named)


@pytest.mark.parametrize(("text", "query"), [
    ("저는 고2인데 진로가 고민이에요. 치과기공사 하는 일 알려줘", "진로가 고민이에요. 치과기공사 하는 일 알려줘"),
    ("고등학생인데 요리하는 거 좋아해요", "요리하는 거 좋아해요"),
    ("중식조리사 학력은?", "중식조리사 학력은?"),  # 중식 is not 중1-3
    ("중2예요", "중2예요"),  # nothing else left: the text stays
])
def test_the_search_leaves_out_the_students_school_and_grade(text: str, query: str) -> None:
    from assistant.counselor.profile import without_self_description

    assert without_self_description(text) == query
