"""Retrieval evaluation: Recall@1/5/10, MRR@10, nDCG@10 and latency per mode.

Recall@k is the share of questions with at least one gold document in the top k (the usual "top-k accuracy"
of open-domain QA; with one gold id it equals recall). nDCG@10 uses binary relevance over all gold ids.

Input: JSONL lines `{"q": "...", "gold": ["external_id", ...]}`, or a SQuAD/KorQuAD JSON file, whose
paragraphs become one document each (`squad:<title>:<n>`) and each question's gold is its own paragraph.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from assistant.errors import EvalDataError
from assistant.evaluation.jsonl import json_lines
from ingest.documents import SourceDocument, nfc


@dataclass(frozen=True)
class Question:
    q: str
    gold: tuple[str, ...]
    type: str | None = None  # the question type, when the file gives one (per-type figures)


def load_questions(path: Path) -> tuple[list[Question], list[SourceDocument]]:
    """Questions, plus the documents a SQuAD-format file carries (empty for JSONL)."""
    if not path.exists():
        raise EvalDataError(f"{path}: no such file — give a JSONL of {{\"q\", \"gold\"}} lines or a SQuAD JSON file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # not one JSON document: JSONL
    if isinstance(whole, dict) and isinstance(whole.get("data"), list):
        return _squad(path, whole)
    questions = []
    for n, obj in json_lines(path, text):
        if not isinstance(obj, dict) or not isinstance(obj.get("q"), str) or not obj["q"].strip():
            raise EvalDataError(f"{path}:{n}: needs a non-empty string field \"q\"")
        gold = obj.get("gold")
        if not isinstance(gold, list) or not gold or not all(isinstance(g, str) for g in gold):
            raise EvalDataError(f"{path}:{n}: \"gold\" must be a non-empty list of external_id strings")
        qtype = obj.get("type")
        questions.append(Question(nfc(obj["q"]), tuple(gold), qtype if isinstance(qtype, str) else None))
    if not questions:
        raise EvalDataError(f"{path}: no questions in the file")
    return questions, []


def _squad(path: Path, obj: dict) -> tuple[list[Question], list[SourceDocument]]:
    questions, docs = [], []
    used: set[str] = set()
    for a, article in enumerate(obj["data"]):
        where = f"{path}: data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs", []), list):
            raise EvalDataError(f"{where}: an article must be an object with a \"paragraphs\" list")
        title = nfc(str(article.get("title", "")))
        for n, para in enumerate(article.get("paragraphs", [])):
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) or not para["context"].strip():
                raise EvalDataError(f"{where}.paragraphs[{n}]: needs a non-empty string \"context\"")
            ext = f"squad:{title}:{n}"
            if ext in used:  # two articles with the same title: keep their paragraphs apart
                ext = f"squad:{title}#{a}:{n}"
            used.add(ext)
            docs.append(SourceDocument(ext, title or ext, nfc(para["context"]), str(path), None, {"format": "squad"}))
            for qa in para.get("qas", []) or []:
                question = qa.get("question") if isinstance(qa, dict) else None
                if isinstance(question, str) and question.strip():
                    questions.append(Question(nfc(question), (ext,)))
    if not questions:
        raise EvalDataError(f"{path}: the SQuAD file has no questions")
    return questions, docs


def score_ranking(ranked: Sequence[str], gold: Iterable[str]) -> dict[str, float]:
    gold = set(gold)
    out: dict[str, float] = {}
    for k in (1, 5, 10):
        out[f"recall@{k}"] = float(any(r in gold for r in ranked[:k]))
    rr = next((1.0 / i for i, r in enumerate(ranked[:10], 1) if r in gold), 0.0)
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(ranked[:10], 1) if r in gold)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold), 10) + 1))
    out["mrr@10"] = rr
    out["ndcg@10"] = dcg / idcg if idcg else 0.0
    return out


def evaluate(
    search: Callable[[str, str], list[str]],
    questions: Sequence[Question],
    modes: Sequence[str],
    *,
    on_progress: Callable[[], None] | None = None,
) -> dict[str, dict[str, float]]:
    """`search(query, mode)` returns external ids in rank order. One JSON-ready dict per mode."""
    report: dict[str, dict[str, float]] = {}
    for mode in modes:
        totals: dict[str, float] = {}
        by_type: dict[str, list[dict[str, float]]] = {}
        latencies = []
        for q in questions:
            t = time.perf_counter()
            ranked = search(q.q, mode)
            latencies.append((time.perf_counter() - t) * 1000)
            scores = score_ranking(ranked, q.gold)
            for key, v in scores.items():
                totals[key] = totals.get(key, 0.0) + v
            if q.type:
                by_type.setdefault(q.type, []).append(scores)
            if on_progress:
                on_progress()
        row: dict = {key: round(v / len(questions), 4) for key, v in totals.items()}
        row["p50_ms"] = round(float(np.percentile(latencies, 50)), 2)
        row["p95_ms"] = round(float(np.percentile(latencies, 95)), 2)
        if by_type:
            row["per_type"] = {t: {"n": len(s), **{m: round(sum(x[m] for x in s) / len(s), 4)
                                                   for m in ("recall@1", "recall@5")}} for t, s in sorted(by_type.items())}
        report[mode] = row
    return report


def failures(search: Callable[[str, str], list[str]], questions: Sequence[Question], mode: str, k: int = 5) -> list[dict]:
    out = []
    for q in questions:
        ranked = search(q.q, mode)
        if not any(r in q.gold for r in ranked[:k]):
            out.append({"q": q.q, "gold": list(q.gold), "got": ranked[:k]})
    return out
