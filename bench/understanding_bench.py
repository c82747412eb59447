"""LLM turn understanding vs the learned classifier, on a fixed sample of the benchmark's halves, in one run.

    python -m bench.understanding_bench                                   # Qwen2.5-Coder-1.5B (the qwen extra), CPU
    python -m bench.understanding_bench --split dev --per-set 20          # dev: failures may be looked at
    python -m bench.understanding_bench --generator openai:http://127.0.0.1:8001/v1

Two sets per split, each sampled the same way every run (the `--per-set` lines with the smallest sha256 of their
text): the procedural single turns (`procedural_hard_single_<split>`: question types and the gold occupation) and
the paraphrases (`paraphrase_<split>`: an occupation described in a student's own words, gold occupation only).

Per turn, as the counselor reads it:
  classifier  types from the learned classifier; the occupation a name lookup finds in the turn, else retrieval's
              best match (hybrid + re-ranker)
  llm         types from the LLM when it gives any known one (else the classifier's); the occupation a name lookup
              finds in the turn, else the LLM's proposal when the DB confirms it, else retrieval's best match
Reported: question-type macro-F1 and exact match (procedural set), occupation accuracy (both sets), how often the
LLM's proposal was confirmed by the DB, and the cost per turn (p50 / p95 ms). For a `blind` split only aggregates
are printed and written (bench/out/understanding_<split>.json); no turn, reply or failure is shown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from assistant.counselor.llm_understanding import LLMTurnReader
from assistant.counselor.question_types import question_types
from assistant.evaluation.jsonl import json_lines
from assistant.evaluation.question_types import ALIASES, TypedTurn, score_types
from assistant.runtime import build_runtime, load_generator
from bench.turn_bench import DATA, ensure_kb
from db.settings import DEFAULT_EMBEDDER, Settings

ROOT = Path(__file__).resolve().parent.parent
SETS = ("procedural_hard_single", "paraphrase")


def sample(path: Path, n: int) -> list[dict]:
    rows = [obj for _, obj in json_lines(path, path.read_text(encoding="utf-8"))]
    return sorted(rows, key=lambda o: hashlib.sha256(o["q"].encode("utf-8")).hexdigest())[:n]


def _ms(values: list[float]) -> dict:
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


def measure(rows: list[dict], rt, reader: LLMTurnReader, progress: Progress, label: str) -> dict:
    """Both readings of each turn; aggregates only (the per-turn detail is returned apart, for dev)."""
    retriever = rt.retriever
    typed = "type" in rows[0] and rows[0]["type"] != "description"
    preds: dict[str, dict[str, tuple[str, ...]]] = {"classifier": {}, "llm": {}}
    right = {"classifier": 0, "llm": 0}
    cost: dict[str, list[float]] = {"classifier": [], "llm": []}
    confirmed = proposed = 0
    detail = []
    task = progress.add_task(label, total=len(rows))
    for obj in rows:
        q, gold = obj["q"], set(obj["gold"])
        t = time.perf_counter()
        types_c = question_types(q)
        named = retriever.lookup_facts(q)
        hits = retriever.search(q, k=5, mode="hybrid+facts").hits
        best = named[0].external_id if named else (hits[0].external_id if hits else None)
        cost["classifier"].append((time.perf_counter() - t) * 1000)
        frame = reader.read(q)
        cost["llm"].append(cost["classifier"][-1] + frame.ms)
        proposed += frame.proposed is not None
        confirmed += frame.occupation is not None
        llm_best = named[0].external_id if named else (
            frame.occupation.external_id if frame.occupation is not None else best)
        preds["classifier"][q], preds["llm"][q] = types_c, frame.types
        right["classifier"] += best in gold
        right["llm"] += llm_best in gold
        detail.append({"q": q, "gold": sorted(gold), "classifier": best, "llm": llm_best, "reply": frame.reply,
                       "types": list(frame.types), "check": frame.check})
        progress.advance(task)
    out: dict = {"n": len(rows), "llm_proposed": proposed, "llm_confirmed_by_db": confirmed}
    turns = [TypedTurn(o["q"], frozenset({ALIASES.get(o["type"], o["type"])})) for o in rows] if typed else []
    for way in ("classifier", "llm"):
        out[way] = {"occupation_accuracy": round(right[way] / len(rows), 4), "ms": _ms(cost[way])}
        if typed:
            scored = score_types(lambda text, w=way: preds[w][text], turns)
            out[way].update(types_macro_f1=scored["macro_f1"], types_exact=scored["exact"])
    return {"aggregates": out, "detail": detail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="transformers:qwen2.5-coder-1.5b")
    ap.add_argument("--split", choices=("blind", "dev"), default="blind")
    ap.add_argument("--per-set", type=int, default=30, help="turns sampled from each set")
    ap.add_argument("--dtype", default="auto", help="a transformers model's dtype on CPU: auto (fp32) or bf16")
    args = ap.parse_args()
    ensure_kb()
    gen = load_generator(args.generator, cache_dir=Settings().data_dir / "models", dtype=args.dtype)
    rt = build_runtime(f"sqlite:///{DATA / 'jinro.db'}", DATA / "index", DEFAULT_EMBEDDER, gen)
    rt.counselor.warm()
    reader = LLMTurnReader(gen, lookup=rt.retriever.lookup_facts, search=rt.retriever.search,
                           facts_of=rt.retriever.facts.facts_for_documents)
    report: dict = {"generator": gen.name, "split": args.split, "per_set": args.per_set, "sets": {}}
    with Progress() as progress:
        for name in SETS:
            rows = sample(ROOT / "data" / "eval" / f"{name}_{args.split}.jsonl", args.per_set)
            result = measure(rows, rt, reader, progress, f"{name}_{args.split}")
            report["sets"][name] = result["aggregates"]
            if args.split != "blind":
                report["sets"][name]["detail"] = result["detail"]
    out = ROOT / "bench" / "out" / f"understanding_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"| set ({args.split}) | n | reader | occupation acc. | types macro-F1 | types exact | ms p50 | ms p95 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, agg in report["sets"].items():
        for way in ("classifier", "llm"):
            r = agg[way]
            print(f"| {name} | {agg['n']} | {way} | {r['occupation_accuracy']:.3f} | {r.get('types_macro_f1', '-')} | "
                  f"{r.get('types_exact', '-')} | {r['ms']['p50']} | {r['ms']['p95']} |")
        print(f"| {name} | | LLM proposed / confirmed by the DB | {agg['llm_proposed']} / {agg['llm_confirmed_by_db']} | | | | |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
