"""The student-vocabulary lexicon and query expansion (assistant/retrieval/query.py, data/lexicon/student_terms.tsv)."""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from assistant.errors import RetrievalError
from assistant.retrieval.query import DEFAULT_LEXICON, ExpandedQuery, expand, find_terms, load_lexicon, parse_lexicon
from db.settings import Settings
from ingest.jobs import parse_record, render_document

ROOT = Path(__file__).resolve().parent.parent
JOB_DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"


@lru_cache(maxsize=1)
def corpus_text() -> str:
    """Every occupation's passage text as the retriever indexes it (name, summary, duties, facts)."""
    parts = []
    with JOB_DICTIONARY.open(encoding="utf-8") as fh:
        for line in fh:
            doc = render_document(parse_record(json.loads(line)), str(JOB_DICTIONARY))
            parts.append(f"{doc.title}\n{doc.text}")
    return "\n".join(parts)


def test_the_project_lexicon_loads_once_and_is_large() -> None:
    lex = load_lexicon()
    assert lex is load_lexicon(), "cached"
    assert lex.path == str(DEFAULT_LEXICON.resolve())
    assert len(lex) >= 300
    fields = Counter(lex.fields.values())
    for area in ("medicine", "dentistry", "nursing", "pharmacy", "it", "games", "design", "video", "music",
                 "sports", "beauty", "food", "fashion", "animals", "education", "law", "military", "public",
                 "finance", "trades", "transport", "agri", "social", "science", "retail", "logistics",
                 "tourism", "writing", "religion", "ceremony"):
        assert fields[area] >= 1, area
    assert all(targets for targets in lex.entries.values())


def test_every_target_appears_in_the_job_dictionary() -> None:
    text = corpus_text()
    lex = load_lexicon()
    missing = sorted({t for targets in lex.entries.values() for t in targets if t not in text})
    assert not missing, f"targets not in the corpus: {missing}"


def test_no_entry_only_repeats_its_term() -> None:
    lex = load_lexicon()
    assert not [t for t, targets in lex.entries.items() if set(targets) <= {t}]


@pytest.mark.parametrize(("query", "expected"), [
    ("포크레인 기사 되고 싶어", {"굴착기"}),
    ("포크 레인 운전하고 싶어요", {"굴착기"}),  # spacing
    ("포크레인을 운전하는 일", {"굴착기"}),  # particle
    ("롤 프로게이머가 꿈이에요", {"게임"}),
    ("롤이랑 배그 좋아하는데", {"게임"}),
    ("롤선수 되려면", {"게임", "프로게이머"}),  # head noun after a short term
    ("유튜버가되고싶어요", {"크리에이터", "동영상"}),
    ("네일샵 차리고 싶어", {"손톱"}),
    ("피티쌤 되려면 뭐 해야 돼", {"트레이너", "운동"}),
    ("CF 찍는 일", {"광고"}),
    ("cf 감독", {"광고"}),  # Latin case
    ("AI 개발자", {"인공지능"}),
    ("편의점 알바생", {"판매원"}),
    ("폰으로 하는 게임 만들고 싶어", {"휴대전화"}),
    ("아이돌 연습생", {"가수"}),
    ("사랑니 뽑는 의사", {"치과"}),
    ("승무원 되려면", {"객실승무원"}),
    ("간호사 선생님", set()),  # already the dictionary's word: nothing to add
])
def test_expansion_finds_terms_with_particles_and_spacing(query: str, expected: set[str]) -> None:
    e = expand(query)
    assert isinstance(e, ExpandedQuery)
    assert expected <= set(e.added_terms), e
    assert e.text.startswith(query)
    for term in e.added_terms:
        assert term in e.text
    if not expected and not e.added_terms:
        assert e.text == query


@pytest.mark.parametrize("query", [
    "컨트롤 잘하는 사람",  # 롤 inside another word
    "롤모델이 누구야",  # 롤 followed by a noun that is not a particle
    "스폰서 구하는 일",  # 폰 inside another word
    "폰트 디자인",  # 폰 followed by 트
    "AIR 컨디셔너",  # AI inside a Latin word
    "PDF 파일 정리",  # PD inside a Latin word
    "차이가 뭐야",  # no single-syllable 차 entry
])
def test_no_expansion_inside_unrelated_words(query: str) -> None:
    terms = find_terms(query)
    assert not {"롤", "폰", "ai", "pd", "차"} & set(terms), terms


def test_targets_already_in_the_query_are_not_added() -> None:
    e = expand("굴착기 말고 포크레인이라고 부르는 거")
    assert "굴착기" not in e.added_terms
    assert "굴삭기" in e.added_terms


def test_longest_term_wins() -> None:
    assert find_terms("웹툰작가 되고 싶어") == ["웹툰작가"]
    assert find_terms("게임유튜버") == ["게임유튜버"]


def test_no_terms_no_change() -> None:
    e = expand("수의사가 되려면 어떤 공부를 해야 하나요?")
    assert e == ExpandedQuery("수의사가 되려면 어떤 공부를 해야 하나요?")


def test_another_lexicon_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "terms.tsv"
    path.write_text("term\ttargets\tfield\n# comment\n덕질\t팬,연예인\tmusic\n", encoding="utf-8")
    lex = load_lexicon(path)
    assert len(lex) == 1
    assert expand("덕질 하다가", lex).added_terms == ("팬", "연예인")
    assert expand("포크레인", lex).added_terms == ()
    monkeypatch.setenv("JINRO_LEXICON", str(path))  # the operator's setting, read at the edges ...
    assert load_lexicon(Settings().lexicon) is lex  # ... and passed down (the runtime hands it to the retriever)
    assert load_lexicon() is load_lexicon(DEFAULT_LEXICON), "nothing below the edges reads the environment"


def test_malformed_lexicon_says_where() -> None:
    with pytest.raises(RetrievalError, match=r"x.tsv:2"):
        parse_lexicon("term\ttargets\n롤\n", "x.tsv")
    with pytest.raises(RetrievalError, match="twice"):
        parse_lexicon("term\ttargets\n롤\t게임\n롤\t게임\n", "x.tsv")
    with pytest.raises(RetrievalError, match="cannot read"):
        load_lexicon("/nonexistent/terms.tsv")


def test_expansion_is_fast() -> None:
    load_lexicon()
    queries = ["이 썩은 거 치료해주고 사랑니 뽑아주는 일은 어떤 직업이야?", "롤 같은 게임 만드는 개발자 되고 싶어",
               "포크 레인 운전 자격증", "편의점 알바생 말고 다른 알바", "수학 선생님이 되려면 어느 대학에 가야 해?" * 5]
    n = 500
    t = time.perf_counter()
    for i in range(n):
        expand(queries[i % len(queries)])
    per_query_ms = (time.perf_counter() - t) * 1000 / n
    assert per_query_ms < 1.0, per_query_ms
