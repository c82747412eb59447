"""Crisis screen benchmark: the rule layer alone (the peer: what shipped before) against rules + classifier, in one run.

    python -m bench.safety_bench            # writes bench/out/safety.json and prints a table

Sets: the bank's blind half (aggregates only, never its messages), data/eval/safety_test.jsonl (the older held-out
set), and for false positives every ChatbotData question and every career question of data/eval/.  Latency is per
message on one core after a warm-up, for chat-sized messages (the blind half) and for 2,000-character rants.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from assistant.evaluation.safety import evaluate_safety, false_positive_rates
from assistant.safety.bank import BANK_FILES, chatbot_questions, eval_career_questions, load_bank
from assistant.safety.crisis import detect_crisis
from assistant.safety.rules import match_rules

OUT = Path("bench/out/safety.json")
SETS = {"bank blind": BANK_FILES["blind"], "safety_test (old held-out)": Path("data/eval/safety_test.jsonl")}


def rules_only(path: Path) -> dict:
    """Recall and precision of the rule layer alone on a labelled file (aggregates only)."""
    from assistant.evaluation.safety import load_examples

    tp = fp = fn = 0
    for ex in load_examples(path):
        got = match_rules(ex.text).crisis
        gold = ex.level == "crisis"
        tp, fp, fn = tp + (got and gold), fp + (got and not gold), fn + (gold and not got)
    return {"precision": round(tp / (tp + fp), 4) if tp + fp else 1.0, "recall": round(tp / (tp + fn), 4)}


def latency(texts: list[str]) -> dict:
    detect_crisis("워밍업 죽겠다")
    times = []
    for t in texts:
        t0 = time.perf_counter()
        detect_crisis(t)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"n": len(texts), "p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    report: dict = {"sets": {}}
    for name, path in SETS.items():
        full = evaluate_safety(path)
        full.pop("errors")
        report["sets"][name] = {"rules_only": rules_only(path), "rules_and_classifier": full}
    report["false_positives"] = false_positive_rates()
    report["false_positives_rules_only"] = {
        name: sum(match_rules(t).crisis for t in texts)
        for name, texts in (("chatbot_data", chatbot_questions()), ("career_questions", eval_career_questions()))}
    rant = ("오늘 학교에서 있었던 일인데 수행평가 준비하느라 정신이 하나도 없었고 친구들이랑도 좀 서먹했어 " * 40)[:2000]
    report["latency"] = {"chat_sized": latency([i.text for i in load_bank("blind")]),
                         "rant_2000_chars": latency([rant] * 50)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    table = Table(title="crisis screen: rules only vs rules + classifier")
    for col in ("set", "rules P / R", "rules+model P / R", "concern recall", "p50 ms"):
        table.add_column(col)
    for name, r in report["sets"].items():
        full = r["rules_and_classifier"]
        table.add_row(name, f"{r['rules_only']['precision']:.3f} / {r['rules_only']['recall']:.3f}",
                      f"{full['precision']:.3f} / {full['recall']:.3f}", str(full["concern"]["recall"]), str(full["p50_ms"]))
    Console().print(table)
    Console().print({"false_positives": report["false_positives"], "rules_only": report["false_positives_rules_only"],
                     "latency": report["latency"]})


if __name__ == "__main__":
    main()
