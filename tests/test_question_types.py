"""The question-type classifier: its written corpus, the shipped model (current with the corpus), multi-label
turns, bad input, the evaluation's arithmetic and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.counselor.question_types import MODEL_PATH, TYPES, QuestionTypeModel, classify, question_types, shipped_model
from assistant.counselor.train_question_types import CORPUS_DIR, corpus, corpus_sha256
from assistant.errors import EvalDataError, QuestionTypeModelError
from assistant.evaluation.question_types import TypedTurn, load_typed, score_types

ROOT = Path(__file__).resolve().parents[1]


def test_the_corpus_is_large_varied_and_well_formed() -> None:
    lines = [json.loads(line) for p in sorted(CORPUS_DIR.glob("written_*.jsonl"))
             for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) >= 1500
    for obj in lines:
        assert obj["labels"] and set(obj["labels"]) <= set(TYPES), obj
        assert ("{job}" in obj["text"]) == (obj["mention"] == "name") or obj["mention"] != "name", obj
        if obj["mention"] != "name":
            assert "{job}" not in obj["text"], obj
    for t in TYPES:
        assert sum(t in obj["labels"] for obj in lines) >= 200, t
    assert len({obj["style"] for obj in lines}) >= 7
    assert sum(len(obj["labels"]) > 1 for obj in lines) >= 100


def test_placeholders_are_filled_with_names_no_evaluation_set_uses() -> None:
    texts, labels = corpus()
    assert len(texts) == len(labels) and not any("{job}" in t for t in texts)
    assert texts == corpus()[0]  # seeded


def test_the_shipped_model_is_trained_on_the_current_corpus() -> None:
    assert shipped_model().corpus_sha256 == corpus_sha256(), \
        "data/turns/written_*.jsonl changed: retrain with python -m assistant.counselor.train_question_types"


@pytest.mark.parametrize(("text", "expected"), [
    ("간호사 되려면 자격증이랑 대학 어디 나와야 돼?", {"certificate", "education"}),
    ("그 직업은 자격증이 필요해요?", {"certificate"}),
    ("건물의 조명을 디자인하는 사람 되려면 어떻게 해야 돼요?", {"how_to_become"}),
    ("요리하는 걸 좋아해요. 어떤 직업이 있을까요?", {"explore"}),
    ("두 번째 거 연봉 얼마야", {"salary"}),
    ("안녕 ㅎㅎ", {"chitchat"}),
    ("수학 숙제 좀 풀어줘", {"other"}),
])
def test_types_of_turns_written_here(text: str, expected: set[str]) -> None:
    assert set(question_types(text)) == expected


@pytest.mark.parametrize("text", ["🙂🙂", "ㅋㅋㅋㅋ", "...", "a" * 2000, "취업 job 어떻게 find 해요?", "자 격 증 따 려 면"])
def test_bad_input_gets_a_type_without_an_exception(text: str) -> None:
    types = question_types(text)
    assert types and set(types) <= set(TYPES)
    assert classify(text) in set(TYPES) - {"chitchat"} | {"greeting"}


def test_a_damaged_or_missing_model_says_how_to_rebuild_it(tmp_path: Path) -> None:
    with pytest.raises(QuestionTypeModelError, match="train_question_types"):
        QuestionTypeModel.load(tmp_path / "none.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(MODEL_PATH.read_bytes()[:1000])
    with pytest.raises(QuestionTypeModelError, match="train_question_types"):
        QuestionTypeModel.load(broken)


def test_score_types_counts_extra_types_as_false_positives() -> None:
    turns = [TypedTurn("a", frozenset({"certificate"})), TypedTurn("b", frozenset({"education"}))]
    perfect = score_types(lambda t: {"certificate"} if t == "a" else {"education"}, turns)
    assert perfect["macro_f1"] == 1.0 and perfect["exact"] == 1.0
    extra = score_types(lambda t: {"certificate", "education"}, turns)
    assert extra["per_type"]["certificate"]["precision"] == 0.5 and extra["exact"] == 0.0
    assert np.isclose(extra["macro_f1"], 2 / 3, atol=1e-3)


def test_typed_files_are_read_and_bad_ones_refused(tmp_path: Path) -> None:
    turns = load_typed(ROOT / "data" / "eval" / "procedural_single_dev.jsonl")
    assert len(turns) > 300 and any("salary" in t.types for t in turns)  # salary_outlook is read as salary
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"q": "안녕"}\n')
    with pytest.raises(EvalDataError, match="type"):
        load_typed(empty)
