"""The learned re-ranker: its shipped weights, its file format, the pseudo-query procedure it is trained on, and its
effect on a real small knowledge DB (a re-ranker whose weights favour one feature must reorder the fused list)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import RetrievalError
from assistant.retrieval.rerank import FEATURES, Reranker, default_path, features
from assistant.retrieval.train_reranker import DESCRIPTIONS, EVAL_DIR, evaluation_gold, pseudo_query
from ingest.embedding import E5Embedder
from tests.support.knowledge_base import KB, module_kb


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = module_kb(tmp_path_factory, embedder, "rerank-kb")
    yield kb
    kb.close()


def only(feature: str, model_id: str, sign: float = 1.0, policy: str = "order") -> Reranker:
    w = np.zeros(len(FEATURES))
    w[FEATURES.index(feature)] = sign
    return Reranker(model_id, w, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), policy=policy)


# ------------------------------------------------------------------------------------------------ the shipped file


def test_the_default_model_ships_a_reranker_trained_on_its_features() -> None:
    r = Reranker.for_model(E5Embedder.model_id)
    assert r is not None and r.model_id == E5Embedder.model_id
    assert r.weights.shape == (len(FEATURES),) and np.all(np.isfinite(r.weights))
    meta = r.meta
    assert meta["pseudo_queries"] >= 1000 and meta["excluded_by_eval"] > 0 and meta["student_descriptions"] >= 1500
    # the honest dev figure is out of fold, and the shipped one does not lose to the fused order there
    oof = meta["dev_out_of_fold"]
    for name, fused in oof["fused"].items():
        assert oof["reranked"][name]["recall@1"] + oof["reranked"][name]["recall@5"] >= fused["recall@1"] + fused["recall@5"] - 0.01, name


def test_a_model_without_a_shipped_reranker_gets_none() -> None:
    assert Reranker.for_model("no-such-model") is None


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    r = only("name_in_query", "e5-small")
    r.save(tmp_path / "r.json")
    back = Reranker.load(tmp_path / "r.json")
    assert np.allclose(back.weights, r.weights) and back.model_id == "e5-small" and back.depth == 20


@pytest.mark.parametrize("damage", ["truncate", "features", "scale", "policy"])
def test_a_damaged_file_is_refused_with_what_to_do(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "r.json"
    only("name_in_query", "e5-small").save(path)
    body = json.loads(path.read_text())
    if damage == "truncate":
        path.write_text(path.read_text()[:40])
    else:
        if damage == "features":
            body["features"] = body["features"][:-1]
        elif damage == "policy":
            body["policy"] = "shuffle"
        else:
            body["scale"][0] = 0
        path.write_text(json.dumps(body))
    with pytest.raises(RetrievalError, match="train_reranker|git|policy"):
        Reranker.load(path)


# ------------------------------------------------------------------------------------------------ the procedure


def test_pseudo_queries_never_use_an_evaluation_occupation() -> None:
    gold = evaluation_gold()
    blind = {g for p in EVAL_DIR.glob("*blind*.jsonl") for line in p.read_text().splitlines() if line.strip()
             for g in json.loads(line)["gold"]}
    assert blind and blind <= gold  # blind halves are excluded too (only their gold ids are read)


def test_student_descriptions_are_training_data_apart_from_every_evaluation_occupation() -> None:
    lines = [json.loads(line) for line in DESCRIPTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    gold = {g for obj in lines for g in obj["gold"]}
    assert len(lines) >= 1500 and len(gold) >= 750
    assert not gold & evaluation_gold()  # written about occupations no evaluation file names
    assert {obj["style"] for obj in lines} == {"polite", "casual", "context"}


def test_a_duty_sentence_becomes_a_student_question_without_the_name() -> None:
    rng = random.Random(0)
    duties = "제빵사는 고객에게 맞는 빵을 만든다. 재료를 준비하고 반죽을 발효시킨다."
    made = {pseudo_query("제빵사", duties, random.Random(seed)) for seed in range(40)}
    families = {m[0] for m in made if m}
    assert {"duty", "keywords", "name"} <= families
    for family, query in (m for m in made if m):
        if family != "name":
            assert "제빵사" not in query
    duty = [m[1] for m in made if m and m[0] == "duty"]
    assert any("만드는" in q or "발효시키는" in q for q in duty), duty
    assert pseudo_query("제빵사", "", rng) is None or pseudo_query("제빵사", "", rng)[0] == "name"


# ------------------------------------------------------------------------------------------------ on a real DB


def test_a_reranker_reorders_the_fused_candidates(kb: KB, embedder) -> None:
    query = "아픈 동물을 치료하는 사람"
    plain = kb.retriever(embedder, rerank=False).search(query, k=20, mode="hybrid").hits
    by_chunks = kb.retriever(embedder, reranker=only("fused_rank", embedder.model_id, -1.0)).search(query, k=20, mode="hybrid").hits
    # weight -1 on 1/rank reverses the top 20
    assert [h.external_id for h in by_chunks] == [h.external_id for h in reversed(plain[:20])]
    # the shipped policy only moves the best candidate to the front: here the 20th, the rest keep their order
    promote = only("fused_rank", embedder.model_id, -1.0, policy="promote")
    promoted = kb.retriever(embedder, reranker=promote).search(query, k=20, mode="hybrid").hits
    assert [h.external_id for h in promoted] == [plain[19].external_id] + [h.external_id for h in plain[:19]]


def test_features_say_when_the_name_is_in_the_question(kb: KB, embedder) -> None:
    retriever = kb.retriever(embedder, rerank=False)
    c = retriever.fused_candidates("간호사 되려면 뭐 해야 돼?")
    x = features(c, retriever.priors, (0.0, 0.0))
    assert x.shape == (len(c.docs), len(FEATURES))
    named = [i for i, t in enumerate(c.titles) if t == "간호사"]
    assert named and x[named[0], FEATURES.index("name_in_query")] == 1.0
    assert x[:, FEATURES.index("fused_rank")].tolist() == [1 / (i + 1) for i in range(len(c.docs))]


def test_a_reranker_of_another_model_is_refused(kb: KB, embedder) -> None:
    with pytest.raises(RetrievalError, match="trained for"):
        kb.retriever(embedder, reranker=only("name_in_query", "use-multilingual-v3"))


def test_bad_queries_still_give_empty_candidates(kb: KB, embedder) -> None:
    retriever = kb.retriever(embedder)
    assert retriever.fused_candidates("ㅋㅋㅋ !!").docs == []
    assert retriever.search("!!! 🙂", mode="hybrid").hits == []
    assert default_path("e5-small").name == "reranker-e5-small.json"


def test_a_named_occupation_joins_the_candidates_and_follows_the_rerankers_first(kb: KB, embedder) -> None:
    query = "간호사처럼 병원에서 환자 돌보는 일 말고 다른 일"
    # a re-ranker that ignores names and keeps the fused first: the named occupation comes right after it
    keep_first = only("fused_rank", embedder.model_id, 1.0, policy="promote")
    hits = kb.retriever(embedder, reranker=keep_first).search(query, k=5, mode="hybrid+facts").hits
    fused_first = kb.retriever(embedder, rerank=False).search(query, k=5, mode="hybrid").hits[0]
    assert hits[0].external_id == fused_first.external_id
    named = [h for h in hits if h.title == "간호사"]
    assert named and named[0].from_facts and hits.index(named[0]) <= 1
    # without a re-ranker the named occupation leads, as before
    plain = kb.retriever(embedder, rerank=False).search(query, k=5, mode="hybrid+facts").hits
    assert plain[0].title == "간호사" and plain[0].from_facts


def test_the_setting_turns_the_reranker_off(kb: KB, embedder) -> None:
    from assistant.generation.grounded import GroundedGenerator
    from assistant.runtime import build_runtime

    on = build_runtime(kb.url, kb.index_dir, embedder.model_id, GroundedGenerator())
    off = build_runtime(kb.url, kb.index_dir, embedder.model_id, GroundedGenerator(), rerank=False)
    assert on.retriever.reranker is not None and off.retriever.reranker is None
    for rt in (on, off):
        rt.knowledge.engine.dispose()
