"""The question types of a student's turn: a multi-label linear classifier, with the rule patterns as features.

Types (`TYPES`): certificate, education, how_to_become, duties, salary (pay and outlook), related, fit, explore,
chitchat, other; a turn may ask several ("자격증이랑 대학 어디 나와야 돼?"). Features: the hashed character, jamo and
word n-grams of `assistant.text_features`, the character n-grams of its last clause apart (the question usually
comes last, after profile talk or a description), plus the rule patterns of `understanding.py` that match (valued
RULE_WEIGHT): the rules are evidence the model weighs, not the decision.

One logistic regression per type, trained by `python -m assistant.counselor.train_question_types` on the corpus of
written phrasings in data/turns/ (not on any evaluation file) and shipped as data/turns/question_types.npz; a type
is asked when its probability reaches the threshold chosen on the procedural benchmark's dev half; when none does,
the most probable one. Scoring is a sparse dot product (well under a millisecond).
"""

from __future__ import annotations

import functools
import re
import threading
import zipfile
from pathlib import Path

import numpy as np

from assistant.counselor.understanding import rule_matches
from assistant.errors import QuestionTypeModelError
from assistant.text_features import N_FEATURES, ngram_features

TYPES = ("certificate", "education", "how_to_become", "duties", "salary", "related", "fit", "explore", "chitchat",
         "other")
ANSWERABLE = ("certificate", "education", "how_to_become", "duties", "salary", "related")  # from an occupation's facts
RULE_WEIGHT = 2.0
MODEL_PATH = Path(__file__).resolve().parents[2] / "data" / "turns" / "question_types.npz"


_CLAUSE_END = re.compile(r"[.?!~\n]+\s*|(?<=[은는인]데)[,\s]+")


def last_clause(text: str) -> str:
    """The turn's last sentence or clause (after "…인데", "…는데"): where a student puts the question, after the
    profile talk or the description before it."""
    parts = [p for p in _CLAUSE_END.split(text.strip()) if p.strip()]
    return parts[-1] if parts else text


def features(text: str) -> tuple[np.ndarray, np.ndarray]:
    return ngram_features(text, rule_matches(text), RULE_WEIGHT, tail=last_clause(text))


class QuestionTypeModel:
    """`probabilities(text)` per type; `types(text)`: the asked types, most probable first."""

    def __init__(self, rows: np.ndarray, weights: np.ndarray, bias: np.ndarray, threshold: float,
                 corpus_sha256: str = "") -> None:
        if weights.shape != (len(rows), len(TYPES)) or bias.shape != (len(TYPES),):
            raise QuestionTypeModelError(f"question-type model has weights {weights.shape} for {len(rows)} rows; "
                                         f"expected {len(TYPES)} types — rebuild it: "
                                         "python -m assistant.counselor.train_question_types")
        self.dense = np.zeros((N_FEATURES, len(TYPES)), dtype=np.float32)
        self.dense[rows] = weights
        self.bias = bias.astype(np.float32)
        self.threshold = float(threshold)
        self.corpus_sha256 = corpus_sha256  # of the written phrasings it was trained on (a test checks it is current)

    def scores(self, text: str) -> np.ndarray:
        idx, val = features(text)
        return 1.0 / (1.0 + np.exp(-(val @ self.dense[idx] + self.bias)))

    def probabilities(self, text: str) -> dict[str, float]:
        return {t: float(p) for t, p in zip(TYPES, self.scores(text))}

    def types(self, text: str) -> tuple[str, ...]:
        p = self.scores(text)
        order = np.argsort(-p)
        asked = tuple(TYPES[i] for i in order if p[i] >= self.threshold)
        return asked or (TYPES[int(order[0])],)

    def save(self, path: Path = MODEL_PATH) -> None:
        used = np.flatnonzero(np.abs(self.dense).sum(axis=1) > 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, rows=used.astype(np.int32), weights=self.dense[used].astype(np.float16),
                            bias=self.bias, threshold=np.array(self.threshold), types=np.array(TYPES),
                            corpus_sha256=np.array(self.corpus_sha256))

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> QuestionTypeModel:
        hint = "rebuild it: python -m assistant.counselor.train_question_types"
        if not path.is_file():
            raise QuestionTypeModelError(f"{path}: question-type model not found — {hint}")
        try:
            with np.load(path) as z:
                if tuple(z["types"].tolist()) != TYPES:
                    raise QuestionTypeModelError(f"{path}: types {z['types'].tolist()} differ from {TYPES} — {hint}")
                return cls(z["rows"], z["weights"].astype(np.float32), z["bias"], float(z["threshold"]),
                           str(z["corpus_sha256"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise QuestionTypeModelError(f"{path}: unreadable question-type model ({exc}) — {hint}") from exc


_model: QuestionTypeModel | None = None
_lock = threading.Lock()


def shipped_model() -> QuestionTypeModel:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = QuestionTypeModel.load()
    return _model


@functools.lru_cache(maxsize=1024)
def question_types(text: str) -> tuple[str, ...]:
    """The types the turn asks, most probable first (the shipped model; a turn asks twice: to understand it and to
    compose the answer)."""
    return shipped_model().types(text)


def classify(question: str) -> str:
    """The turn's main intent, as the counselor and the grounded composer use it: its most probable type, with
    chit-chat answered as a greeting."""
    primary = question_types(question)[0]
    return "greeting" if primary == "chitchat" else primary
