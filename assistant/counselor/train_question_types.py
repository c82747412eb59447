"""Train the question-type classifier (`question_types.py`) on the written phrasings in data/turns/.

    python -m assistant.counselor.train_question_types     # writes data/turns/question_types.npz, prints figures

Training data: data/turns/written_*.jsonl, phrasings written type by type (spoken, misspelled, spacing-free, slang,
반말/존댓말, long and short; with a name, a description, a back-reference or no occupation), never derived from an
evaluation file (data/turns/README.md). `{job}` is filled with an occupation name drawn with a seed from the bundled
dictionary, leaving out every occupation an evaluation file names.

Choice (dev only): the inverse L2 strength C and the decision threshold with the best macro-F1 on the procedural
benchmark's dev single turns (data/eval/procedural_single_dev.jsonl, procedural_hard_single_dev.jsonl), whose
types the corpus writers never saw. The blind halves are scored only as aggregates, after the choice.
The peer in the same run: the rules alone (`understanding.rule_intent`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from pathlib import Path

import numpy as np

from assistant.counselor.question_types import MODEL_PATH, TYPES, QuestionTypeModel, features
from assistant.counselor.understanding import rule_intent
from assistant.evaluation.question_types import load_typed, score_types
from assistant.retrieval.train_reranker import EVAL_DIR, evaluation_gold
from assistant.text_features import N_FEATURES, matrix
from ingest.jobs import read_jobs
from ingest.shipped import BUNDLED_DICTIONARY

CORPUS_DIR = Path(__file__).resolve().parents[2] / "data" / "turns"
DEV = ("procedural_single_dev.jsonl", "procedural_hard_single_dev.jsonl")
BLIND = ("procedural_single_blind.jsonl", "procedural_hard_single_blind.jsonl")
CS = (4.0, 16.0, 64.0)
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SEED = 14
_QUALIFIER = re.compile(r"\([^)]*\)")


def corpus(seed: int = SEED) -> tuple[list[str], list[set[str]]]:
    """The written phrasings with `{job}` filled, and their type sets."""
    excluded = evaluation_gold()
    names = sorted({_QUALIFIER.sub("", doc.title).strip() for doc, _ in read_jobs(BUNDLED_DICTIONARY)
                    if doc.external_id not in excluded})
    rng = random.Random(seed)
    texts, labels = [], []
    for path in sorted(CORPUS_DIR.glob("written_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                texts.append(obj["text"].replace("{job}", rng.choice(names)))
                labels.append({t for t in obj["labels"] if t in TYPES})
    return texts, labels


def corpus_sha256() -> str:
    """One hash over the written phrasing files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(CORPUS_DIR.glob("written_*.jsonl")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fit(x, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per type: (weights [N_FEATURES, types], bias)."""
    from sklearn.linear_model import LogisticRegression  # training only: the product scores with numpy

    weights = np.zeros((N_FEATURES, len(TYPES)), np.float32)
    bias = np.zeros(len(TYPES), np.float32)
    for j in range(len(TYPES)):
        if y[:, j].min() == y[:, j].max():  # a type the corpus never (or always) has: never (always) asked
            bias[j] = 10.0 if y[0, j] else -10.0
            continue
        m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, y[:, j])
        weights[:, j], bias[j] = m.coef_[0], m.intercept_[0]
    return weights, bias


def model_from(weights: np.ndarray, bias: np.ndarray, threshold: float) -> QuestionTypeModel:
    rows = np.flatnonzero(np.abs(weights).sum(axis=1) > 0)
    return QuestionTypeModel(rows, weights[rows], bias, threshold, corpus_sha256())


def _dev_score(model: QuestionTypeModel, sets: dict) -> float:
    return sum(score_types(model.types, sets[name])["macro_f1"] for name in DEV) / len(DEV)


def train(out: Path = MODEL_PATH) -> dict:
    texts, labels = corpus()
    y = np.array([[t in ls for t in TYPES] for ls in labels], dtype=np.int8)
    x = matrix(texts, features)
    sets = {name: load_typed(EVAL_DIR / name) for name in DEV + BLIND}
    grid, fitted = {}, {}
    for c in CS:
        fitted[c] = fit(x, y, c)
        for threshold in THRESHOLDS:
            grid[f"C={c},threshold={threshold}"] = round(_dev_score(model_from(*fitted[c], threshold), sets), 4)
    best = max(grid, key=lambda k: (grid[k], k))
    c, threshold = (float(part.split("=")[1]) for part in best.split(","))
    model = model_from(*fitted[c], threshold)
    model.save(out)
    rules = lambda text: {rule_intent(text)}
    report = {
        "corpus": len(texts), "per_type_in_corpus": {t: int(y[:, j].sum()) for j, t in enumerate(TYPES)},
        "chosen": best, "grid_dev_macro_f1": grid,
        "dev": {name: score_types(model.types, sets[name]) for name in DEV},
        "dev_rules": {name: score_types(rules, sets[name])["macro_f1"] for name in DEV},
        "blind_macro_f1": {name: score_types(model.types, sets[name])["macro_f1"] for name in BLIND},
        "blind_rules_macro_f1": {name: score_types(rules, sets[name])["macro_f1"] for name in BLIND},
    }
    return report


def main() -> None:
    report = train()
    json.dump(report, sys.stdout, ensure_ascii=False, indent=1)
    print(f"\nwrote {MODEL_PATH}")


if __name__ == "__main__":
    main()
