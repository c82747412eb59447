"""Question-type evaluation: per-type precision, recall and F1, and their macro mean, of a predictor of the types a
turn asks, on a labelled JSONL file (`{"q" or "turns", "type"}` lines, e.g. the procedural benchmark's single turns).

A file's types use the benchmark's names; `salary_outlook` is the classifier's `salary`. A prediction is a set of
types, so a turn that gets its type plus another counts a false positive for the other. Macro figures are over the
types the file labels (the classifier's other types still count as false positives where predicted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from assistant.errors import EvalDataError
from assistant.evaluation.jsonl import json_lines

ALIASES = {"salary_outlook": "salary"}


@dataclass(frozen=True)
class TypedTurn:
    text: str
    types: frozenset[str]


def load_typed(path: Path) -> list[TypedTurn]:
    """The labelled turns of a file (the last turn of a scenario); lines without a type are skipped."""
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file — give a JSONL of {{\"q\", \"type\"}} lines")
    out = []
    for _, obj in json_lines(path, path.read_text(encoding="utf-8-sig")):
        if not isinstance(obj, dict):
            continue
        label = obj.get("type") or obj.get("types")
        text = obj.get("q") or (obj.get("turns") or [None])[-1]
        if not label or not isinstance(text, str):
            continue
        labels = [label] if isinstance(label, str) else list(label)
        out.append(TypedTurn(text, frozenset(ALIASES.get(t, t) for t in labels)))
    if not out:
        raise EvalDataError(f"{path}: no line has a \"type\" — nothing to evaluate")
    return out


def score_types(predict: Callable[[str], Iterable[str]], turns: Sequence[TypedTurn]) -> dict:
    """{"n", "macro_f1", "exact", "per_type": {type: {"n", "precision", "recall", "f1"}}}."""
    labelled = sorted({t for turn in turns for t in turn.types})
    tp = dict.fromkeys(labelled, 0)
    fp = dict.fromkeys(labelled, 0)
    fn = dict.fromkeys(labelled, 0)
    exact = 0
    for turn in turns:
        predicted = set(predict(turn.text))
        exact += predicted == set(turn.types)
        for t in labelled:
            tp[t] += t in predicted and t in turn.types
            fp[t] += t in predicted and t not in turn.types
            fn[t] += t not in predicted and t in turn.types
    per_type = {}
    for t in labelled:
        p = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else 0.0
        r = tp[t] / (tp[t] + fn[t]) if tp[t] + fn[t] else 0.0
        per_type[t] = {"n": tp[t] + fn[t], "precision": round(p, 4), "recall": round(r, 4),
                       "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}
    macro = sum(v["f1"] for v in per_type.values()) / len(per_type)
    return {"n": len(turns), "macro_f1": round(macro, 4), "exact": round(exact / len(turns), 4), "per_type": per_type}
