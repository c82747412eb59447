"""A counselor turn's latency split by stage (memory, safety, facts, retrieval, prompt, generation, guard, store),
for each generator, on the full bundled knowledge DB.

    python -m bench.turn_bench                       # grounded + Gemma 3 270M (transformers, CPU)
    python -m bench.turn_bench --generators grounded --turns 200

Writes bench/out/turn.json and prints a markdown table. The knowledge DB is built under bench/out/data on first use
(`JINRO_DATA_DIR=bench/out/data ingest jobs data/job_dictionary`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from assistant.evaluation.dialogue import load_scenarios
from assistant.runtime import build_runtime, load_generator
from assistant.counselor.sessions import create_session

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "out" / "data"
STAGES = ("memory", "safety", "facts", "retrieval", "prompt", "generation", "guard", "store")


def ensure_kb() -> None:
    if not (DATA / "jinro.db").exists():
        subprocess.run(["ingest", "jobs", str(ROOT / "data/job_dictionary")], check=True,
                       env={**__import__("os").environ, "JINRO_DATA_DIR": str(DATA)})


def run(spec: str, turns: int) -> dict:
    gen = load_generator(spec)
    rt = build_runtime(f"sqlite:///{DATA / 'jinro.db'}", DATA / "index", "use-multilingual-v3", gen)
    rt.counselor.warm()
    scenarios = load_scenarios(ROOT / "data/eval/dialogue_dev.jsonl")
    stage: dict[str, list[float]] = {s: [] for s in STAGES}
    totals: list[float] = []
    done = 0
    for sc in scenarios * 10:
        sid = create_session(rt.knowledge.factory, "bench").id
        for text in sc.turns:
            t = time.perf_counter()
            r = rt.counselor.turn(sid, text, owner="bench")
            totals.append((time.perf_counter() - t) * 1000)
            for s in STAGES:
                if s in r.timings_ms:
                    stage[s].append(r.timings_ms[s])
            done += 1
            if done >= turns:
                break
        if done >= turns:
            break
    row = {"generator": gen.name, "turns": done,
           "total_p50_ms": round(float(np.percentile(totals, 50)), 1),
           "total_p95_ms": round(float(np.percentile(totals, 95)), 1)}
    for s, values in stage.items():
        if values:
            row[f"{s}_p50_ms"] = round(float(np.percentile(values, 50)), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generators", default="grounded,transformers:gemma3-270m-gguf")
    ap.add_argument("--turns", type=int, default=100, help="turns per generator (LLMs: at most 10)")
    args = ap.parse_args()
    ensure_kb()
    rows = []
    for spec in args.generators.split(","):
        rows.append(run(spec, args.turns if spec == "grounded" else min(args.turns, 10)))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    out = ROOT / "bench" / "out" / "turn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    cols = ["total_p50_ms", "total_p95_ms"] + [f"{s}_p50_ms" for s in STAGES]
    print("| generator | turns | " + " | ".join(c.replace("_ms", "") for c in cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for r in rows:
        print(f"| {r['generator']} | {r['turns']} | " + " | ".join(str(r.get(c, "-")) for c in cols) + " |")


if __name__ == "__main__":
    main()
