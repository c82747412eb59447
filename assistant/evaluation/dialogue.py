"""Dialogue evaluation: play multi-turn scripts through the counselor and judge the answer to the last turn.

Scenario lines: `{"turns": ["...", ...], "gold": ["external_id", ...], "answer_any": ["...", ...]}` (optional
"name"). A scenario is *cited* when the last answer cites one of the gold ids, and *answered* when the last answer
contains one of the `answer_any` strings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from assistant.counselor.turn import Counselor
from assistant.errors import EvalDataError
from assistant.evaluation.jsonl import json_lines
from assistant.counselor.sessions import create_session, delete_session


@dataclass(frozen=True)
class Scenario:
    name: str
    turns: tuple[str, ...]
    gold: tuple[str, ...]
    answer_any: tuple[str, ...]
    type: str | None = None  # the question type of the last turn, when the file gives one (per-type figures)


def load_scenarios(path: Path) -> list[Scenario]:
    if not path.exists():
        raise EvalDataError(f"{path}: no such file — give a JSONL of {{\"turns\", \"gold\", \"answer_any\"}} lines")
    out = []
    for n, obj in json_lines(path, path.read_text(encoding="utf-8-sig")):
        turns = obj.get("turns") if isinstance(obj, dict) else None
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise EvalDataError(f"{path}:{n}: \"turns\" must be a non-empty list of strings")
        gold, expected = obj.get("gold", []), obj.get("answer_any", [])
        if not isinstance(gold, list) or not isinstance(expected, list) or not (gold or expected):
            raise EvalDataError(f"{path}:{n}: give \"gold\" (external ids) and/or \"answer_any\" (strings) as lists")
        qtype = obj.get("type") if isinstance(obj.get("type"), str) else None
        out.append(Scenario(str(obj.get("name", f"line{n}")), tuple(turns), tuple(map(str, gold)), tuple(map(str, expected)),
                            qtype))
    if not out:
        raise EvalDataError(f"{path}: no scenarios in the file")
    return out


def evaluate_dialogue(counselor: Counselor, scenarios: list[Scenario], *,
                      on_progress: Callable[[], None] | None = None) -> dict:
    """Scores per scenario, plus every last answer. For a model generator, `model_answered` scores what the model
    itself said (before the fact guard replaced an answer with the grounded one) and `guard_replaced` is the share of
    last answers the guard replaced; `answered` scores what the student saw."""
    cited = answered = model_answered = replaced = 0
    failures, answers = [], []
    latencies: list[float] = []
    by_type: dict[str, list[tuple[bool, bool]]] = {}
    for sc in scenarios:
        session = create_session(counselor.factory, "eval")
        try:
            result = None
            for turn in sc.turns:
                t = time.perf_counter()
                result = counselor.turn(session.id, turn, owner="eval")
                latencies.append((time.perf_counter() - t) * 1000)
        finally:
            delete_session(counselor.factory, session.id, "eval")
        ids = {c["external_id"] for c in result.citations}
        own = result.extra.get("model_answer", result.answer)
        ok_cite = not sc.gold or bool(ids & set(sc.gold))
        ok_answer = not sc.answer_any or any(a in result.answer for a in sc.answer_any)
        ok_own = not sc.answer_any or any(a in own for a in sc.answer_any)
        cited += ok_cite
        answered += ok_answer
        model_answered += ok_own
        replaced += result.fact_guard in ("replaced", "cut")
        if sc.type:
            by_type.setdefault(sc.type, []).append((ok_cite, ok_answer))
        answers.append({"name": sc.name, "turns": list(sc.turns), "answer": result.answer, "fact_guard": result.fact_guard,
                        "model_answer": own, "cited_ok": ok_cite, "answered_ok": ok_answer, "model_answered_ok": ok_own})
        if not (ok_cite and ok_answer):
            failures.append({"name": sc.name, "turns": list(sc.turns), "gold": list(sc.gold),
                             "answer_any": list(sc.answer_any), "cited": sorted(ids), "answer": result.answer,
                             "cited_ok": ok_cite, "answered_ok": ok_answer})
        if on_progress:
            on_progress()
    n = len(scenarios)
    per_type = {t: {"n": len(v), "cited": round(sum(c for c, _ in v) / len(v), 4),
                    "answered": round(sum(a for _, a in v) / len(v), 4)} for t, v in sorted(by_type.items())}
    return {"scenarios": n, **({"per_type": per_type} if per_type else {}), "cited": round(cited / n, 4), "answered": round(answered / n, 4),
            "model_answered": round(model_answered / n, 4), "guard_replaced": round(replaced / n, 4),
            "turn_p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "turn_p95_ms": round(float(np.percentile(latencies, 95)), 2), "failures": failures, "answers": answers}
