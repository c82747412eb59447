"""HybridRetriever on a small real knowledge DB (~200 job-dictionary records, real embedder, SQLite).

Modes, fusion vs single lists, the SQL facts lookup, facts-first ordering, bad input, an empty DB, and refresh
after ingest without per-query rebuilds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import assistant.retrieval.corpus as corpus_mod
from assistant.errors import RetrievalError
from assistant.retrieval.hybrid import MODES, HybridRetriever
from assistant.evaluation.retrieval import score_ranking
from db.vectorstore import FaissStore
from ingest.documents import SourceDocument
from ingest.indexing import sync_index
from ingest.pipeline import Ingester
from tests.support.dictionary import code_of
from tests.support.knowledge_base import KB, clone_kb, dev_questions, empty_kb, module_kb


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = module_kb(tmp_path_factory, embedder, "retrieval-kb")
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def retriever(kb: KB, embedder) -> HybridRetriever:
    r = kb.retriever(embedder)
    r.warm()
    return r


def job(name: str) -> str:
    return f"job:{code_of(name)}"


# ------------------------------------------------------------------------------------------------ modes


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_returns_documents_with_their_metadata(retriever: HybridRetriever, mode: str) -> None:
    result = retriever.search("아픈 동물을 치료하는 수의사가 되고 싶어요", k=5, mode=mode)
    assert result.mode == mode
    assert 1 <= len(result.hits) <= 5
    ids = [h.external_id for h in result.hits]
    assert len(set(ids)) == len(ids), "one passage per document"
    for h in result.hits:
        assert h.external_id.startswith("job:")
        assert h.title and h.text
        assert h.as_of is None or (h.as_of.isdigit() and len(h.as_of) == 4)
        assert isinstance(h.score, float)
    assert any(h.as_of for h in result.hits)
    assert "total" in result.timings_ms
    assert 0.0 <= result.confidence <= 1.0 + 1e-6
    assert job("수의사(일반)") in ids


def test_student_vocabulary_is_expanded_and_reported(kb: KB, retriever: HybridRetriever, embedder) -> None:
    """Lexicon targets go to the lexical lists and are reported; expansion=False leaves the query alone."""
    query = "피티쌤이랑 헬스장에서 일하고 싶어"
    result = retriever.search(query, k=5, mode="bm25")
    assert {"트레이너", "운동"} <= set(result.expansion)
    assert result.query == query, "the reported query is the student's own"
    assert "expand" in result.timings_ms
    plain = kb.retriever(embedder, expansion=False).search(query, k=5, mode="bm25")
    assert plain.expansion == ()
    assert retriever.search("수의사가 되고 싶어요", k=5).expansion == ()


def test_single_modes_report_only_their_own_list(retriever: HybridRetriever) -> None:
    for mode in ("dense", "bm25", "bigram"):
        hits = retriever.search("간호사 업무", k=5, mode=mode).hits
        assert all(set(h.ranks) == {mode} for h in hits)
    fused = retriever.search("간호사 업무", k=5, mode="hybrid").hits
    assert any(len(h.ranks) > 1 for h in fused)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_hybrid_recall_at_5_beats_or_equals_every_single_mode(retriever: HybridRetriever) -> None:
    questions = dev_questions()
    assert len(questions) == 20
    recall = {}
    for mode in ("dense", "bm25", "bigram", "hybrid"):
        recall[mode] = sum(
            score_ranking([h.external_id for h in retriever.search(q.q, k=10, mode=mode).hits], q.gold)["recall@5"]
            for q in questions
        ) / len(questions)
    for mode in ("dense", "bm25", "bigram"):
        assert recall["hybrid"] >= recall[mode], recall
    assert recall["hybrid"] >= 0.8, recall


# ------------------------------------------------------------------------------------------------ facts


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("간호사가 되려면 대학 꼭 나와야 하나요?", "간호사"),
        ("웹 디자이너는 무슨 자격증 필요해?", "웹디자이너"),  # spaced, with a particle
        ("웹디자이너는 무슨 일 해?", "웹디자이너"),
        ("수의사가 되려면 뭐 해야 돼?", "수의사(일반)"),  # the dictionary name is qualified: 수의사(일반)
        ("수의사 되려면 무슨 면허 따야 해?", "수의사(일반)"),
    ],
)
def test_facts_lookup_recognises_named_occupations(retriever: HybridRetriever, text: str, name: str) -> None:
    facts = retriever.facts.lookup(text)
    assert facts, text
    assert facts[0].name == name
    assert facts[0].external_id == job(name)
    assert facts[0].summary
    assert facts[0].matched  # the span of the text that named it


@pytest.mark.parametrize(
    "text",
    ["선생님", "선생님이 되고 싶어요", "안녕하세요", "안녕", "반가워요 ㅎㅎ", "고마워요!", "안녕하세요 잘 부탁드려요"],
)
def test_facts_lookup_does_not_fire_on_vague_words_or_greetings(retriever: HybridRetriever, text: str) -> None:
    assert retriever.facts.lookup(text) == []
    assert retriever.search(text, k=5, mode="hybrid+facts").facts == []


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("간호사가 되려면 대학 꼭 나와야 하나요?", "간호사"),
        ("수의사가 되려면 어떻게 해야 돼?", "수의사(일반)"),
        ("웹 디자이너는 연봉이 어때?", "웹디자이너"),
    ],
)
def test_facts_first_puts_the_named_occupation_first(retriever: HybridRetriever, query: str, name: str) -> None:
    result = retriever.search(query, k=5, mode="hybrid+facts")
    assert result.hits[0].external_id == job(name)
    assert result.hits[0].from_facts
    assert [f.name for f in result.facts][0] == name
    assert len({h.external_id for h in result.hits}) == len(result.hits)


def test_facts_first_leads_with_the_document_even_for_a_vague_question(retriever: HybridRetriever) -> None:
    """Fused lists rank on the whole question; the named occupation leads whatever else the question says."""
    lead = retriever.search("인공지능엔지니어는 연봉이 어때?", k=3, mode="hybrid+facts").hits[0]
    assert lead.external_id == job("인공지능엔지니어")
    assert lead.from_facts


def test_context_names_the_occupation_when_the_query_does_not(retriever: HybridRetriever) -> None:
    result = retriever.search("그 직업은 학력이 어느 정도 필요해?", k=5, mode="hybrid+facts", context="간호사가 되고 싶어요")
    assert result.hits[0].external_id == job("간호사")


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("query", ["", "   ", "\n\t  \u3000"])
def test_empty_or_blank_query_is_an_error(retriever: HybridRetriever, query: str) -> None:
    with pytest.raises(RetrievalError, match="empty"):
        retriever.search(query)


def test_unknown_mode_and_bad_k_are_errors(retriever: HybridRetriever) -> None:
    with pytest.raises(RetrievalError, match="unknown retrieval mode"):
        retriever.search("간호사", mode="semantic")
    with pytest.raises(RetrievalError, match="k must be"):
        retriever.search("간호사", k=0)


def test_a_100kb_query_gives_a_result_in_bounded_time(retriever: HybridRetriever) -> None:
    query = ("간호사가 되려면 어떤 공부를 해야 하나요? " * 5000)[:100_000]
    assert len(query.encode("utf-8")) > 100_000
    t = time.perf_counter()
    result = retriever.search(query, k=5)
    assert time.perf_counter() - t < 10.0
    assert result.hits
    assert len(result.query) <= 2000


@pytest.mark.parametrize("query", ["?!...", "~~~ !!! ???", "😀🎉🔥", "🙂 ... 👍!", "ㅋㅋㅋ", "ㅠㅠ ㅎㅎ"])
def test_punctuation_or_emoji_only_gives_no_hits_and_a_note(retriever: HybridRetriever, query: str) -> None:
    for mode in ("dense", "hybrid+facts"):
        result = retriever.search(query, mode=mode)
        assert result.hits == []
        assert result.note


def test_mixed_korean_and_english_query(retriever: HybridRetriever) -> None:
    result = retriever.search("AI 개발자 되려면 python 공부?", k=10)
    assert result.hits
    assert result.note is None
    titles = [h.title for h in result.hits]
    assert any("인공지능" in t or "개발자" in t or "프로그래머" in t or "엔지니어" in t for t in titles), titles


def test_empty_knowledge_db_gives_no_hits_and_a_note(tmp_path: Path, embedder) -> None:
    kb = empty_kb(tmp_path / "empty", embedder)
    try:
        r = kb.retriever(embedder)
        for mode in MODES:
            result = r.search("간호사가 되려면?", mode=mode)
            assert result.hits == [] and result.facts == []
            assert result.note and "empty" in result.note
    finally:
        kb.close()


# ------------------------------------------------------------------------------------------------ refresh


NEW_DOC = SourceDocument(
    external_id="doc:penguin-keeper",
    title="펭귄사육사",
    text="펭귄사육사는 아쿠아리움에서 남극 펭귄의 먹이를 준비하고 건강 상태를 살피며 번식을 돕는다. "
         "펭귄 우리의 수온과 얼음을 관리한다.",
    source_path="test",
    as_of="2024",
)


def test_ingest_is_seen_without_a_rebuild_and_no_reload_when_unchanged(kb: KB, embedder, tmp_path: Path) -> None:
    copy = clone_kb(kb, tmp_path / "copy", embedder)
    try:
        r = copy.retriever(embedder, check_every=0)
        before = r.search("펭귄 먹이 주는 사육사", k=5, mode="bm25")
        assert NEW_DOC.external_id not in [h.external_id for h in before.hits]
        assert r.corpus.refreshes == 1
        first = r.corpus.current()

        # quiet queries: the version is checked each time (check_every=0) but nothing is rebuilt
        for q in ("간호사", "웹디자이너 자격증", "수의사 되려면", "펭귄", "데이터 분석"):
            for mode in ("dense", "hybrid+facts"):
                r.search(q, k=5, mode=mode)
        assert r.corpus.refreshes == 1 and r.corpus.current() is first

        # another writer (its own store object, as `ingest` in another process) adds a document
        writer_store = FaissStore(copy.index_dir, embedder.model_id, embedder.dim).load()
        report = Ingester(copy.knowledge.factory, embedder).run([NEW_DOC])
        assert report.added == 1
        sync_index(copy.knowledge.factory, writer_store)

        for mode in ("bm25", "dense", "hybrid"):
            ids = [h.external_id for h in r.search("펭귄 먹이 주는 사육사", k=5, mode=mode).hits]
            assert ids[0] == NEW_DOC.external_id, (mode, ids)
        assert r.corpus.refreshes == 2
        for _ in range(3):
            r.search("펭귄사육사", k=3)
        assert r.corpus.refreshes == 2
    finally:
        copy.close()


def test_a_new_snapshot_is_built_beside_the_one_in_use_and_swapped_in_whole(kb: KB, embedder, tmp_path: Path) -> None:
    """background=True (the API): the query that notices an ingest is answered from the old snapshot at once, while
    the new one (its own vector index and term indexes) is built on another thread; then the new one serves."""
    copy = clone_kb(kb, tmp_path / "copy", embedder)
    try:
        r = copy.retriever(embedder, check_every=0, background=True)
        old = r.corpus.current()  # only the very first load is waited for
        report = Ingester(copy.knowledge.factory, embedder).run([NEW_DOC])
        assert report.added == 1
        sync_index(copy.knowledge.factory, FaissStore(copy.index_dir, embedder.model_id, embedder.dim).load())

        during = r.search("펭귄 먹이 주는 사육사", k=5, mode="hybrid")
        assert NEW_DOC.external_id not in [h.external_id for h in during.hits]  # the old snapshot answered
        new = r.corpus.wait_built()
        assert new is not old and new.version > old.version and new.store is not old.store
        after = r.search("펭귄 먹이 주는 사육사", k=5, mode="hybrid")
        assert after.hits[0].external_id == NEW_DOC.external_id
        new_chunk = after.hits[0].chunk_id
        assert new_chunk in new.store.ids() and new_chunk not in old.store.ids()  # the old index was left as it was
        assert new_chunk not in old.row_of and r.corpus.refreshes == 2
    finally:
        copy.close()


def test_check_every_limits_version_checks(kb: KB, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    r = kb.retriever(embedder, check_every=3600)
    r.search("간호사", k=3)
    checks = {"n": 0}
    real = corpus_mod.knowledge_version

    def counting(factory):
        checks["n"] += 1
        return real(factory)

    monkeypatch.setattr(corpus_mod, "knowledge_version", counting)
    for _ in range(5):
        r.search("간호사", k=3)
    assert checks["n"] == 0
    assert r.corpus.refreshes == 1
