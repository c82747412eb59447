"""The counselor fine-tune on a real model, measured where it matters: the dialogue scenarios, played through the
real counselor (retrieval, facts, memory, prompt, fact guard) with the base model before and after the LoRA adapter
(Gemma 3 270M, or Qwen2.5-Coder-1.5B-Instruct with `--base qwen2.5-coder-1.5b`), against the `grounded` generator.

    python -m bench.finetune_bench --adapter var/runs/gemma3-270m-cpu/adapter
    python -m bench.finetune_bench --base qwen2.5-coder-1.5b --adapter var/runs/qwen2.5-coder-1.5b-cpu/adapter --sets unlike
    python -m bench.finetune_bench --adapter ... --generators base --sets unlike      # one cell at a time
    python -m bench.finetune_bench --adapter var/runs/x/adapter --generators tuned --label tuned-x   # another run
    python -m bench.finetune_bench --report-only                                       # rebuild answers.md

Sets: `dev` = data/eval/dialogue_dev.jsonl (54 scenarios), `unlike` = data/eval/dialogue_unlike.jsonl (20 scenarios
worded unlike finetune/derive.py's templates, incl. questions the facts cannot answer). Each (generator, set) cell
is written to bench/out/finetune/<base>/<generator>.<set>.json as soon as it is done and reused on a rerun (--force
recomputes); bench/out/finetune/<base>/answers.md puts every last answer side by side. The knowledge DB is the full
bundled dictionary under bench/out/data (built on first use, like bench/turn_bench.py). The base model reads the
prompt through its chat template where it has one (Qwen); an adapter from `finetune train` reads the plain prompt
format it was trained on.

For the LLM generators `answered` scores what the student saw (after the fact guard) and `model_answered` what the
model itself said; `guard_replaced` is the share of last answers the guard replaced with the grounded one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.progress import Progress

from assistant.evaluation.dialogue import evaluate_dialogue, load_scenarios
from assistant.generation.base import Generator
from assistant.runtime import build_runtime, load_generator
from bench.turn_bench import DATA, ensure_kb  # the same full-dictionary knowledge DB
from db.settings import DEFAULT_EMBEDDER, Settings

ROOT = Path(__file__).resolve().parent.parent
OUT_ROOT = ROOT / "bench" / "out" / "finetune"  # a folder per base model
SETS = {"dev": ROOT / "data/eval/dialogue_dev.jsonl", "unlike": ROOT / "data/eval/dialogue_unlike.jsonl"}
BASES = ("gemma3-270m-gguf", "qwen2.5-coder-1.5b")
GENERATORS = ("grounded", "base", "tuned")


def make_generator(which: str, base: str, adapter: Path | None) -> Generator:
    if which == "grounded":
        return load_generator("grounded")
    if which == "tuned" and adapter is None:
        raise SystemExit("--adapter is needed for the `tuned` generator")
    return load_generator(f"transformers:{base}", adapter=str(adapter) if which == "tuned" else None,
                          cache_dir=Settings().data_dir / "models")


def run_cell(which: str, gen: Generator, set_name: str, limit: int | None) -> dict:
    scenarios = load_scenarios(SETS[set_name])[:limit]
    rt = build_runtime(f"sqlite:///{DATA / 'jinro.db'}", DATA / "index", DEFAULT_EMBEDDER, gen)
    rt.counselor.warm()
    rt.counselor.config.finish_model_answer = True  # the model's own answer is scored whole, past the guard
    with Progress() as progress:
        task = progress.add_task(f"{which} on {set_name}", total=len(scenarios))
        report = evaluate_dialogue(rt.counselor, scenarios, on_progress=lambda: progress.advance(task))
    rt.knowledge.engine.dispose()
    report.update(generator=which, generator_name=gen.name, set=set_name)
    return report


def _cells(out: Path) -> dict[tuple[str, str], dict]:
    cells = {}
    for f in sorted(out.glob("*.json")):
        which, set_name = f.stem.rsplit(".", 1)
        cells[(which, set_name)] = json.loads(f.read_text(encoding="utf-8"))
    return cells


def _order(label: str) -> tuple[int, str]:
    return ({"grounded": 0, "base": 1}.get(label, 2), label)


def _one_line(text: str, limit: int = 220) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_report(out: Path, training: dict | None) -> Path:
    cells = _cells(out)
    lines = [f"# {out.name} counselor fine-tune: dialogue scenarios before and after", ""]
    if training:
        lines += ["Training: " + ", ".join(f"{k} {v}" for k, v in training.items()), ""]
    for set_name in SETS:
        present = sorted({g for g, s in cells if s == set_name}, key=_order)
        if not present:
            continue
        lines += [f"## {set_name} ({SETS[set_name].name})", "",
                  "| generator | scenarios | cited | answered (shown) | model answered | guard replaced | turn p50 | turn p95 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for g in present:
            r = cells[(g, set_name)]
            lines.append(f"| {g} ({r['generator_name']}) | {r['scenarios']} | {r['cited']:.2f} | {r['answered']:.2f} | "
                         f"{r.get('model_answered', r['answered']):.2f} | {r.get('guard_replaced', 0):.2f} | "
                         f"{r['turn_p50_ms'] / 1000:.1f} s | {r['turn_p95_ms'] / 1000:.1f} s |")
        lines += ["", "The model's own last answer (✓ contains an expected string; ⟲ the fact guard replaced it):", "",
                  "| scenario | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
        rows = {g: {a["name"]: a for a in cells[(g, set_name)].get("answers", [])} for g in present}
        names = list(dict.fromkeys(n for g in present for n in rows[g]))
        for name in names:
            cols = []
            for g in present:
                a = rows[g].get(name)
                if a is None:
                    cols.append("—")
                    continue
                mark = ("✓ " if a["model_answered_ok"] else "✗ ") + ("⟲ " if a["fact_guard"] in ("replaced", "cut") else "")
                cols.append(mark + _one_line(a["model_answer"]))
            turns = next(rows[g][name]["turns"] for g in present if name in rows[g])
            lines.append(f"| **{name}**: {_one_line(' / '.join(turns), 120)} | " + " | ".join(cols) + " |")
        lines.append("")
    path = out / "answers.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=BASES, default=BASES[0], help="the base model the adapter was trained on")
    ap.add_argument("--adapter", type=Path, help="the LoRA adapter directory (finetune train's output_dir/adapter)")
    ap.add_argument("--generators", nargs="+", choices=GENERATORS, default=list(GENERATORS))
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS))
    ap.add_argument("--label", default="tuned", help="the name the tuned run's results are filed under")
    ap.add_argument("--limit", type=int, help="only the first N scenarios of each set")
    ap.add_argument("--force", action="store_true", help="recompute cells that already have a result")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = OUT_ROOT / args.base
    out.mkdir(parents=True, exist_ok=True)
    info = args.adapter / "jinro_adapter.json" if args.adapter else None
    training = json.loads(info.read_text(encoding="utf-8")).get("training") if info and info.is_file() else None
    if training:
        training = {k: round(v, 4) if isinstance(v, float) else v for k, v in training.items()
                    if k in ("steps", "train_examples", "val_loss_before", "val_loss_after")}
    if not args.report_only:
        ensure_kb()
        for which in args.generators:
            label = args.label if which == "tuned" else which
            todo = [s for s in args.sets if args.force or not (out / f"{label}.{s}.json").exists()]
            if not todo:
                continue
            gen = make_generator(which, args.base, args.adapter)
            for set_name in todo:
                report = run_cell(label, gen, set_name, args.limit)
                (out / f"{label}.{set_name}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                              encoding="utf-8")
                print(f"{label:8} {set_name:6} cited {report['cited']:.2f} answered {report['answered']:.2f} "
                      f"model {report['model_answered']:.2f} replaced {report['guard_replaced']:.2f} "
                      f"p50 {report['turn_p50_ms'] / 1000:.1f} s", flush=True)
            del gen
    print(f"wrote {write_report(out, training)}")


if __name__ == "__main__":
    main()
