"""Evaluate `detect_crisis` on a labelled JSONL file.

Two line formats:
- `{"text": str, "crisis": bool, "category": "suicide"|...|null}` (data/eval/safety_*.jsonl);
- the crisis bank's items (data/safety/bank_*.jsonl, see assistant.safety.bank): `level` crisis | concern | none,
  `category`, and `text` or `turns` (earlier student turns first; the last is screened with the others as context).
Precision, recall and F1 are about the crisis flag (a `concern` answer on a crisis message is a miss); recall is
also given per category, the concern level is counted, and `crisis_recall_with_concern` counts the crisis messages
that got at least the concern check-in.  `errors` lists every example whose flag or category
was wrong — except for a blind file (its name contains "blind"), whose errors are never returned: only aggregates.
`false_positive_rates` measures the crisis flag on every ChatbotData question and every career question in data/eval/.
Both screen as a turn does when given the same `embedder` (the crisis classifier's sentence embedder, e5-small; None
for the rules and n-grams alone).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.evaluation.blind import is_blind
from assistant.safety.bank import BankItem, chatbot_questions, eval_career_questions, read_items
from assistant.safety.crisis import CATEGORIES, detect_crisis

if TYPE_CHECKING:
    from ingest.embedding import Embedder


def load_examples(path: str | Path) -> list[BankItem]:
    """Read and validate the examples; raise `EvalDataError("file:line: reason")` on bad data."""
    return read_items(Path(path))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def evaluate_safety(path: str | Path, *, careful: bool = False, embedder: Embedder | None = None) -> dict:
    """Precision/recall/F1 of the crisis flag, per-category recall, concern counts, errors and latency."""
    examples = load_examples(path)
    detect_crisis("워밍업 죽겠다", careful=careful, embedder=embedder)  # load the model and Kiwi before timing
    tp = fp = fn = tn = category_ok = net = 0
    per_cat = {c: [0, 0] for c in CATEGORIES}  # caught, total
    concern = {"gold": 0, "flagged_concern": 0, "flagged_crisis": 0, "none_flagged_concern": 0}
    by_source: dict[str, int] = {}
    errors, times = [], []
    for ex in examples:
        t0 = time.perf_counter()
        got = detect_crisis(ex.text, careful=careful, context=ex.turns[:-1], embedder=embedder)
        times.append((time.perf_counter() - t0) * 1000.0)
        gold_crisis = ex.level == "crisis"
        if gold_crisis:
            per_cat[ex.category][1] += 1
            per_cat[ex.category][0] += got.crisis
            net += got.level != "none"
        if ex.level == "concern":
            concern["gold"] += 1
            concern["flagged_concern"] += got.level == "concern"
            concern["flagged_crisis"] += got.crisis
        elif ex.level == "none" and got.level == "concern":
            concern["none_flagged_concern"] += 1
        if got.crisis:
            by_source[got.source] = by_source.get(got.source, 0) + 1
        if gold_crisis and got.crisis:
            tp += 1
            category_ok += got.category == ex.category
        elif got.crisis:
            fp += 1
        elif gold_crisis:
            fn += 1
        else:
            tn += 1
        if got.crisis != gold_crisis or (got.crisis and got.category != ex.category):
            errors.append({"text": " / ".join(ex.turns), "expected": ex.category, "got": got.category,
                           "level": got.level, "score": got.score, "matched": list(got.matched)})
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    times.sort()
    return {
        "n": len(examples), "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "category_accuracy": round(category_ok / tp, 4) if tp else None,
        "errors": [] if is_blind(path) else errors, "errors_withheld": is_blind(path),
        "p50_ms": round(statistics.median(times), 4), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 4),
        "per_category_recall": {c: _ratio(*v) for c, v in per_cat.items()},
        "per_category_n": {c: v[1] for c, v in per_cat.items()},
        "concern": {**concern, "recall": _ratio(concern["flagged_concern"], concern["gold"])},
        # crisis messages that got at least the concern check-in (1388, a review): the net under the crisis flag
        "crisis_recall_with_concern": _ratio(net, tp + fn),
        "crisis_by_source": by_source,
    }


def false_positive_rates(embedder: Embedder | None = None) -> dict:
    """The crisis flag on every ChatbotData question and every career question of data/eval/ (all labelled none)."""
    out = {}
    for name, texts in (("chatbot_data", chatbot_questions()), ("career_questions", eval_career_questions())):
        flagged = sum(detect_crisis(t, embedder=embedder).crisis for t in texts)
        out[name] = {"n": len(texts), "crisis": flagged, "rate": _ratio(flagged, len(texts))}
    return out
