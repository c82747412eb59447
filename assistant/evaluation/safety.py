"""Evaluate `detect_crisis` on a labelled JSONL file.

Each non-blank line is `{"text": str, "crisis": bool, "category": "suicide"|...|null}`;
crisis examples need a category, non-crisis ones need null.  Precision, recall and F1 are
about the crisis flag; `errors` lists every example whose flag or category was wrong.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from assistant.errors import EvalDataError
from assistant.safety.crisis import CATEGORIES, detect_crisis


def load_examples(path: str | Path) -> list[dict]:
    """Read and validate the examples; raise `EvalDataError("file:line: reason")` on bad data."""
    p = Path(path)
    if not p.is_file():
        raise EvalDataError(f"{p}: evaluation file not found")
    try:
        raw_lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{p}: cannot read as UTF-8 text ({exc})") from exc
    examples = []
    for no, line in enumerate(raw_lines, start=1):
        if not line.strip():
            continue
        where = f"{p}:{no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise EvalDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("text", "crisis", "category") if k not in obj]
        if missing:
            raise EvalDataError(f"{where}: missing field(s) {', '.join(missing)}")
        text, crisis, category = obj["text"], obj["crisis"], obj["category"]
        if not isinstance(text, str) or not text.strip():
            raise EvalDataError(f"{where}: 'text' must be a non-empty string")
        if not isinstance(crisis, bool):
            raise EvalDataError(f"{where}: 'crisis' must be true or false, got {crisis!r}")
        if category is not None and category not in CATEGORIES:
            raise EvalDataError(f"{where}: unknown category {category!r}; expected one of {CATEGORIES} or null")
        if crisis and category is None:
            raise EvalDataError(f"{where}: a crisis example needs a category")
        if not crisis and category is not None:
            raise EvalDataError(f"{where}: a non-crisis example must have category null")
        examples.append({"text": text, "crisis": crisis, "category": category})
    if not examples:
        raise EvalDataError(f"{p}: no examples in file")
    return examples


def evaluate_safety(path: str | Path, *, careful: bool = False) -> dict:
    """Precision/recall/F1 of the crisis flag, confusion counts, errors and median latency."""
    examples = load_examples(path)
    detect_crisis("워밍업 죽겠다", careful=careful)  # load Kiwi before timing
    tp = fp = fn = tn = category_ok = 0
    errors, times = [], []
    for ex in examples:
        t0 = time.perf_counter()
        got = detect_crisis(ex["text"], careful=careful)
        times.append((time.perf_counter() - t0) * 1000.0)
        if ex["crisis"] and got.crisis:
            tp += 1
            category_ok += got.category == ex["category"]
        elif got.crisis:
            fp += 1
        elif ex["crisis"]:
            fn += 1
        else:
            tn += 1
        if got.crisis != ex["crisis"] or (got.crisis and got.category != ex["category"]):
            errors.append({"text": ex["text"], "expected": ex["category"], "got": got.category,
                           "score": got.score, "matched": list(got.matched)})
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(examples), "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "category_accuracy": round(category_ok / tp, 4) if tp else None,
        "errors": errors, "p50_ms": round(statistics.median(times), 4),
    }


if __name__ == "__main__":  # python -m assistant.evaluation.safety data/eval/safety_dev.jsonl
    import sys

    for arg in sys.argv[1:] or ["data/eval/safety_dev.jsonl"]:
        report = evaluate_safety(arg)
        errs = report.pop("errors")
        print(arg, json.dumps(report, ensure_ascii=False))
        for err in errs:
            print("  ", json.dumps(err, ensure_ascii=False))
