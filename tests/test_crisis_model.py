"""The learned crisis layer: the bank and its split, the shipped model, levels, context, bad input, evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.errors import EvalDataError, SafetyModelError
from assistant.evaluation.safety import evaluate_safety
from assistant.safety.bank import BANK_FILES, load_bank, split_of, split_sources
from assistant.safety.classifier import LABELS, MODEL_PATH, CrisisModel, features, file_sha256, shipped_model, windows
from assistant.safety.crisis import detect_crisis
from assistant.text_features import compact, ngram_features, normalise, pronounced
from ingest.embedding import Embedder

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the bank
def test_blind_half_is_the_hash_split_and_shares_no_situation_with_dev() -> None:
    dev, blind = load_bank("dev"), load_bank("blind")
    assert all(split_of(i.group) == "blind" for i in blind)
    assert not {i.group for i in dev} & {i.group for i in blind}
    assert not {i.turns for i in dev} & {i.turns for i in blind}


def test_bank_has_every_category_and_enough_of_each_level() -> None:
    items = load_bank("dev") + load_bank("blind")
    crisis = [i for i in items if i.level == "crisis"]
    assert len(crisis) >= 600 and len(items) - len(crisis) >= 2000 - 1400  # + ChatbotData and career questions
    assert {i.category for i in crisis} == set(LABELS[2:])
    assert sum(i.level == "concern" for i in items) >= 300
    assert sum(len(i.turns) > 1 for i in items) >= 100  # context windows


def test_blind_file_is_frozen(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="frozen"):
        split_sources([tmp_path / "new.jsonl"])


# ---------------------------------------------------------------- the shipped model
def test_shipped_model_was_trained_on_the_current_dev_bank() -> None:
    assert shipped_model().bank_sha256 == file_sha256(BANK_FILES["dev"]), \
        "bank_dev.jsonl changed: retrain with python -m assistant.safety.train"


def test_thresholds_are_ordered() -> None:
    t = shipped_model().thresholds
    assert 0 < t.careful <= t.crisis and 0 < t.watch <= t.crisis and 0 < t.concern < 1


def test_missing_or_corrupt_model_says_how_to_rebuild(tmp_path: Path) -> None:
    with pytest.raises(SafetyModelError, match="python -m assistant.safety.train"):
        CrisisModel.load(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SafetyModelError, match="python -m assistant.safety.train"):
        CrisisModel.load(bad)


def test_saved_model_scores_like_the_original(tmp_path: Path) -> None:
    m = shipped_model()
    path = tmp_path / "m.npz"
    m.save(path)
    again = CrisisModel.load(path)
    for text in ("요즘 잠이 안 와요", "간호사 되려면?", "아무도 나 없어도 모를 거야"):
        a, b = m.probabilities(text), again.probabilities(text)
        assert all(abs(a[k] - b[k]) < 1e-3 for k in LABELS)


def test_spacing_and_repeats_do_not_change_the_features() -> None:
    plain, spaced = set(features("죽고싶어")[0]), set(features("죽 고 싶 어")[0])
    assert len(plain & spaced) >= 0.9 * len(plain)  # all but the words as typed
    assert np.array_equal(features("힘들어ㅠㅠ")[0], features("힘들어ㅠㅠㅠㅠㅠ")[0])


@pytest.mark.parametrize(("typed", "spelled"), [("주거버리고시퍼", "죽어버리고 싶어"), ("살기시러", "살기 싫어"),
                                               ("업서지고 시퍼", "없어지고 싶어")])
def test_a_respelling_by_sound_shares_the_features_of_the_spelling(typed: str, spelled: str) -> None:
    def overlap(sound: bool) -> float:
        a, b = (set(ngram_features(t, sound=sound)[0]) for t in (typed, spelled))
        return len(a & b) / len(a | b)

    assert pronounced(compact(normalise(typed))) == pronounced(compact(normalise(spelled)))
    assert overlap(sound=True) > overlap(sound=False) + 0.05
    assert pronounced("죽어") == "주거" and pronounced("좋아") == "조아" and pronounced("싶다") == "싶다"


def test_a_long_message_is_scored_in_windows() -> None:
    rant = "오늘 학교에서 있었던 일 얘기할게 수행평가 준비하느라 정신없었고 " * 40
    parts = windows(rant + " 그래서 오늘 밤에 옥상에 올라가서 뛰어내릴 거야")
    assert len(parts) > 5 and "뛰어내릴" in parts[-1]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("text", ["😀😀😀", "ㅠㅠㅠ", "ㅋㅋㅋㅋㅋㅋㅋ", "...", "hello how are you", "간호사 salary 얼마야?",
                                  "ㅁ" * 2000])
def test_odd_input_is_classified_without_an_exception(text: str) -> None:
    a = detect_crisis(text)
    assert a.level in ("crisis", "concern", "none") and not a.crisis


@pytest.mark.parametrize("text", ["자 살 하고 싶어", "죽 고 싶 어", "주 거 버 리 고 싶 다", "i want to kill myself",
                                  "오늘 학교에서 수행평가 때문에 정신없었어 " * 50 + "근데 진짜 죽고 싶다"])
def test_spacing_tricks_english_and_long_rants_do_not_hide_a_crisis(text: str) -> None:
    assert detect_crisis(text).crisis


def test_an_earlier_crisis_turn_does_not_make_every_later_turn_a_crisis() -> None:
    assert not detect_crisis("간호사 되려면 무슨 공부 해야 돼?", context=["죽고 싶어", "진짜로"]).crisis


def test_careful_mode_never_lowers_the_level() -> None:
    for item in load_bank("dev")[:300]:
        plain, careful = detect_crisis(item.text), detect_crisis(item.text, careful=True)
        assert careful.crisis or not plain.crisis


def test_screen_is_fast() -> None:
    texts = [i.text for i in load_bank("dev")[:400]]
    detect_crisis("워밍업 죽겠다")
    times = []
    for t in texts:
        t0 = time.perf_counter()
        detect_crisis(t)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[len(times) // 2] < 0.005


# ---------------------------------------------------------------- evaluation
def test_blind_evaluation_returns_aggregates_only() -> None:
    report = evaluate_safety(BANK_FILES["blind"])
    assert report["errors"] == [] and report["errors_withheld"] is True
    assert set(report["per_category_recall"]) == set(LABELS[2:])
    assert {"gold", "flagged_concern", "flagged_crisis", "recall"} <= report["concern"].keys()
    for key in ("n", "precision", "recall", "f1", "tp", "fp", "fn", "tn", "category_accuracy", "p50_ms"):
        assert key in report  # the keys the JSON always had


def test_eval_cli_never_prints_a_blind_message() -> None:
    result = CliRunner().invoke(app, ["eval", "safety", "--split", "blind", "--json"])
    assert result.exit_code == 0, result.output
    out = result.output
    report = json.loads(out)
    blind_texts = {i.text for i in load_bank("blind")}
    assert report["errors"] == [] and not any(t in out for t in blind_texts)
    assert MODEL_PATH.is_file()


# ---------------------------------------------------------------- the sentence head (e5-small vectors)
def test_the_shipped_model_has_a_sentence_head_for_the_default_embedder(embedder) -> None:
    head = shipped_model().sentence
    assert head is not None and head.model_id == embedder.model_id == "e5-small"
    assert 0 < head.mix < 1 and head.mean.shape == (embedder.dim,)
    t = head.thresholds
    assert 0 < t.watch <= t.crisis and 0 < t.careful <= t.crisis


def test_probabilities_mix_the_two_heads(embedder) -> None:
    m = shipped_model()
    text = "다들 나 없으면 편할 거야"
    vector = embedder.embed_query([text])[0]
    alone, mixed = m.probabilities(text), m.probabilities(text, embed=lambda t: vector)
    sentence = m.sentence.probabilities(vector)
    for i, label in enumerate(LABELS):
        assert mixed[label] == pytest.approx(m.sentence.mix * alone[label] + (1 - m.sentence.mix) * sentence[i], abs=1e-5)
    assert m.thresholds_for(True) is m.sentence.thresholds and m.thresholds_for(False) is m.thresholds


def test_saved_model_keeps_its_sentence_head(tmp_path: Path, embedder) -> None:
    m = shipped_model()
    m.save(tmp_path / "m.npz")
    again = CrisisModel.load(tmp_path / "m.npz")
    embed = lambda t: embedder.embed_query([t])[0]
    a, b = m.probabilities("요즘 아무것도 하기 싫어", embed=embed), again.probabilities("요즘 아무것도 하기 싫어", embed=embed)
    assert all(abs(a[k] - b[k]) < 1e-3 for k in LABELS) and again.sentence.thresholds == m.sentence.thresholds


def test_the_screen_reads_the_sentence_vector_of_the_message(embedder) -> None:
    texts = [i.text for i in load_bank("dev") if i.level == "crisis"][:150]
    differ = 0
    for text in texts:
        with_vector, alone = detect_crisis(text, embedder=embedder), detect_crisis(text)
        differ += with_vector.model != alone.model
    assert differ >= 0.9 * len(texts)  # P(crisis) moved (but where both round to 1.0): the vector is read


class RecordingEmbedder(Embedder):
    """The real embedder, recording what it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.model_id, self.dim, self.texts = inner, inner.model_id, inner.dim, []

    def embed(self, texts):
        return self.inner.embed(texts)

    def embed_query(self, texts):
        self.texts += list(texts)
        return self.inner.embed_query(texts)


def test_a_long_rant_is_embedded_by_its_most_alarming_window_only(embedder) -> None:
    rec = RecordingEmbedder(embedder)
    rant = "오늘 학교에서 있었던 일 얘기할게 수행평가 준비하느라 정신없었고 " * 40 + " 그래서 오늘 밤에 옥상에 올라가서 뛰어내릴 거야"
    assert detect_crisis(rant, embedder=rec).crisis
    assert rec.texts and all(len(t) < 300 for t in rec.texts) and "뛰어내릴" in rec.texts[0]


def test_an_embedder_of_another_model_is_refused(other_embedder) -> None:
    with pytest.raises(SafetyModelError, match="e5-small"):
        detect_crisis("요즘 힘들어", embedder=other_embedder)
    with pytest.raises(SafetyModelError, match="vector"):
        shipped_model().sentence.probabilities(np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize("text", ["😀😀😀", "ㅠㅠㅠ", "   .  ", "hello how are you", "ㅁ" * 2000])
def test_odd_input_with_the_sentence_head(text: str, embedder) -> None:
    assert detect_crisis(text, embedder=embedder).level in ("crisis", "concern", "none")


def test_spaced_out_crisis_is_caught_with_the_sentence_head(embedder) -> None:
    for text in ("주 거 버 리 고 싶 다", "자 살 하고 싶어", "오늘 학교에서 수행평가 때문에 정신없었어 " * 50 + "근데 진짜 죽고 싶다"):
        assert detect_crisis(text, embedder=embedder).crisis


def test_the_runtime_gives_the_screen_the_retrievers_e5_or_its_own(embedder, other_embedder) -> None:
    from assistant.runtime import screen_embedder

    same, layers = screen_embedder(embedder)
    assert same is embedder and layers == "rules + n-grams + e5-small"
    own, layers = screen_embedder(other_embedder)
    assert own is not None and own.model_id == "e5-small" and "its own engine" in layers
    assert detect_crisis("요즘 너무 힘들어", embedder=own).level in ("concern", "crisis")


def test_the_neighbours_vote_for_a_bank_message_with_its_own_label(embedder) -> None:
    """A message the bank holds is its own nearest neighbour: the vote goes to its label (vectors and labels are
    stored in the same order, int8 keeps cosines)."""
    nb = shipped_model().sentence.neighbours
    assert nb is not None and 0 < nb.share <= 1 and len(nb.vectors) == len(nb.labels)
    head = shipped_model().sentence
    for item in [i for i in load_bank("dev") if i.level == "crisis" and len(i.turns) == 1][:3]:
        v = embedder.embed_query([item.text])[0] - head.mean
        vote = nb.vote(v / np.linalg.norm(v))
        assert LABELS[int(np.argmax(vote))] == item.category
