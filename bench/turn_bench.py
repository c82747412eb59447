"""A counselor turn's latency split by stage (memory, safety, facts, retrieval, prompt, generation, guard, store) on the
full bundled knowledge DB, and for LLM generators the time to the first text the student sees, with the fact guard
buffering the whole answer (before: `stream_guard=False`) and streaming it sentence by sentence (after), in one run.

    python -m bench.turn_bench                                    # grounded + the OpenAI path (local protocol server)
    python -m bench.turn_bench --generators grounded --turns 200
    python -m bench.turn_bench --generators transformers:qwen2.5-coder-1.5b --llm-turns 4   # the qwen extra, CPU

`openai-stub` is `OpenAIGenerator` against tests/support/openai_stub.py, a real OpenAI-compatible HTTP server on
127.0.0.1 that streams a fixed three-sentence answer (it passes the fact guard) one word per SSE event, after
`--stub-first-ms` and then `--stub-token-ms` per event: the shape of a vLLM stream, without a model.
Writes bench/out/turn.json and prints markdown tables. The knowledge DB (the default embedder, e5-small) is built
under bench/out/data on first use (`JINRO_DATA_DIR=bench/out/data ingest jobs data/job_dictionary`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from assistant.counselor.sessions import create_session
from assistant.evaluation.dialogue import load_scenarios
from assistant.generation.base import Generator
from assistant.runtime import build_runtime, load_generator
from db.settings import DEFAULT_EMBEDDER, Settings
from ingest.threads import limit_side_pools

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "out" / "data"
STAGES = ("memory", "safety", "understand", "facts", "retrieval", "prompt", "generation", "store")
STUB_ANSWER = ("좋은 질문이에요, 함께 차근차근 알아봐요. 위의 자료에 나온 내용을 먼저 살펴보면 도움이 될 거예요. "
               "더 궁금한 점이 생기면 언제든지 다시 물어봐 주세요.")


def ensure_kb() -> None:
    if not (DATA / "jinro.db").exists():
        subprocess.run(["ingest", "jobs", str(ROOT / "data/job_dictionary")], check=True,
                       env={**os.environ, "JINRO_DATA_DIR": str(DATA), "JINRO_EMBEDDER": DEFAULT_EMBEDDER})


def make_generator(spec: str, stack: ExitStack, first_ms: float, token_ms: float) -> Generator:
    if spec != "openai-stub":
        return load_generator(spec, cache_dir=Settings().data_dir / "models")
    from assistant.generation.openai import OpenAIGenerator
    from tests.support.openai_stub import OpenAIStub, Stream

    words = STUB_ANSWER.split(" ")
    chunks = [w + " " for w in words[:-1]] + [words[-1]]
    stub = stack.enter_context(OpenAIStub(default=Stream(chunks, first_byte_delay=first_ms / 1000,
                                                         chunk_delay=token_ms / 1000)))
    return stack.enter_context(OpenAIGenerator(stub.url, model="counselor", context_window=4096))


def _p(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def run(gen: Generator, turns: int, *, stream_guard: bool = True, understanding: str = "classifier",
        cold: bool = False, screen_e5: bool = True) -> dict:
    """`cold`: the embedder's cache is emptied before every turn, so each turn embeds its message and its terms
    (the occupation in play, lexicon targets) itself; warm, a term seen in an earlier turn comes from the cache.
    `screen_e5=False`: the crisis screen without its e5 sentence head (rules and n-grams), so the row next to the
    default one shows what the sentence head adds to a turn once retrieval reuses its vector."""
    rt = build_runtime(f"sqlite:///{DATA / 'jinro.db'}", DATA / "index", DEFAULT_EMBEDDER, gen,
                       understanding=understanding)
    rt.counselor.warm()
    rt.counselor.config.stream_guard = stream_guard
    if not screen_e5:
        rt.counselor.screen_embedder = None
    scenarios = load_scenarios(ROOT / "data/eval/dialogue_dev.jsonl")
    stage: dict[str, list[float]] = {s: [] for s in STAGES}
    totals: list[float] = []
    first: list[float] = []
    guards: dict[str, int] = {}
    done = 0
    for sc in scenarios * 10:
        sid = create_session(rt.knowledge.factory, "bench").id
        for text in sc.turns:
            if cold:
                rt.retriever.embedder.clear()
            t = time.perf_counter()
            r = rt.counselor.turn(sid, text, owner="bench")
            totals.append((time.perf_counter() - t) * 1000)
            first.append(r.extra.get("first_shown_ms", totals[-1]))
            guards[r.fact_guard or "-"] = guards.get(r.fact_guard or "-", 0) + 1
            for s in STAGES:
                if s in r.timings_ms:
                    stage[s].append(r.timings_ms[s])
            done += 1
            if done >= turns:
                break
        if done >= turns:
            break
    rt.knowledge.engine.dispose()
    row = {"generator": gen.name, "guard": "stream" if stream_guard else "buffer", "understanding": understanding,
           "cache": "cold" if cold else "warm", "screen": "rules+ngrams+e5" if screen_e5 else "rules+ngrams",
           "turns": done, "total_p50_ms": _p(totals, 50), "total_p95_ms": _p(totals, 95),
           "first_shown_p50_ms": _p(first, 50), "first_shown_p95_ms": _p(first, 95), "fact_guard": guards}
    for s, values in stage.items():
        if values:
            row[f"{s}_p50_ms"] = round(float(np.percentile(values, 50)), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generators", default="grounded,openai-stub",
                    help="comma-separated: grounded, openai-stub, transformers:<model>, openai:<base URL>")
    ap.add_argument("--turns", type=int, default=100, help="turns of the grounded generator")
    ap.add_argument("--llm-turns", type=int, default=20, help="turns per guard mode of an LLM generator")
    ap.add_argument("--stub-first-ms", type=float, default=150.0, help="the stub's time to its first byte")
    ap.add_argument("--stub-token-ms", type=float, default=40.0, help="the stub's time between two words")
    ap.add_argument("--understanding", choices=("classifier", "llm"), default="classifier",
                    help="how LLM generators' turns are read (llm: the LLM reads each turn first)")
    args = ap.parse_args()
    ensure_kb()
    limit_side_pools()  # as `jinro serve` does: the cores go to the query embedder
    rows = []
    with ExitStack() as stack:
        for spec in args.generators.split(","):
            gen = make_generator(spec, stack, args.stub_first_ms, args.stub_token_ms)
            if spec == "grounded":
                for cold, screen_e5 in ((False, True), (True, True), (True, False)):
                    rows.append({**run(gen, args.turns, cold=cold, screen_e5=screen_e5), "guard": "-"})
                    print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
                continue
            else:
                for stream_guard in (False, True):
                    rows.append(run(gen, args.llm_turns, stream_guard=stream_guard, understanding=args.understanding))
                    print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
                continue
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    out = ROOT / "bench" / "out" / "turn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    cols = ["first_shown_p50_ms", "total_p50_ms", "total_p95_ms"] + [f"{s}_p50_ms" for s in STAGES]
    print("| generator | guard | screen | cache | turns | " + " | ".join(c.replace("_ms", "") for c in cols) + " |")
    print("|---" * (len(cols) + 5) + "|")
    for r in rows:
        print(f"| {r['generator']} | {r['guard']} | {r['screen']} | {r['cache']} | {r['turns']} | "
              + " | ".join(str(r.get(c, "-")) for c in cols) + " |")


if __name__ == "__main__":
    main()
