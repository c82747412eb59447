"""Crisis screen benchmark, in one run: the rule layer alone, rules + the n-gram classifier (the peer: what shipped
before the sentence head, and what screens where e5-small cannot load), and rules + n-grams + the e5-small head.

    python -m bench.safety_bench            # writes bench/out/safety.json and prints a table

Sets: the bank's blind half (aggregates only, never its messages), data/eval/safety_test.jsonl (the older held-out
set), and for false positives every ChatbotData question and every career question of data/eval/.  Latency is per
message after a warm-up, for chat-sized messages (the blind half) and for 2,000-character rants; with the sentence
head it includes embedding the message (in a turn the retriever's e5 engine does it, and the retrieval query reuses
the vector when it is the same text).
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
from assistant.safety.crisis import detect_crisis, sentence_model
from assistant.safety.rules import match_rules
from ingest.embedding import Embedder, load_embedder

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


def latency(texts: list[str], embedder: Embedder | None = None) -> dict:
    detect_crisis("워밍업 죽겠다", embedder=embedder)
    times = []
    for t in texts:
        t0 = time.perf_counter()
        detect_crisis(t, embedder=embedder)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"n": len(texts), "p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    e5 = load_embedder(sentence_model() or "e5-small", threads=1)
    report: dict = {"sets": {}, "sentence_model": sentence_model()}
    for name, path in SETS.items():
        row = {"rules_only": rules_only(path)}
        for layers, embedder in (("rules_and_ngrams", None), ("rules_ngrams_e5", e5)):
            full = evaluate_safety(path, embedder=embedder)
            full.pop("errors")
            row[layers] = full
        report["sets"][name] = row
    report["false_positives"] = {"rules_and_ngrams": false_positive_rates(), "rules_ngrams_e5": false_positive_rates(e5)}
    report["false_positives"]["rules_only"] = {
        name: sum(match_rules(t).crisis for t in texts)
        for name, texts in (("chatbot_data", chatbot_questions()), ("career_questions", eval_career_questions()))}
    rant = ("오늘 학교에서 있었던 일인데 수행평가 준비하느라 정신이 하나도 없었고 친구들이랑도 좀 서먹했어 " * 40)[:2000]
    chat = [i.text for i in load_bank("blind")]
    report["latency"] = {"chat_sized": latency(chat), "rant_2000_chars": latency([rant] * 50),
                         "chat_sized_with_e5": latency(chat, e5), "rant_2000_chars_with_e5": latency([rant] * 20, e5)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    table = Table(title="crisis screen: rules only vs + n-grams vs + n-grams + e5-small")
    for col in ("set", "rules P / R", "+ n-grams P / R", "+ n-grams + e5 P / R", "concern recall", "p50 ms"):
        table.add_column(col)
    for name, r in report["sets"].items():
        ng, full = r["rules_and_ngrams"], r["rules_ngrams_e5"]
        table.add_row(name, f"{r['rules_only']['precision']:.3f} / {r['rules_only']['recall']:.3f}",
                      f"{ng['precision']:.3f} / {ng['recall']:.3f}", f"{full['precision']:.3f} / {full['recall']:.3f}",
                      str(full["concern"]["recall"]), str(full["p50_ms"]))
    Console().print(table)
    Console().print({"false_positives": report["false_positives"], "latency": report["latency"]})


if __name__ == "__main__":
    main()
