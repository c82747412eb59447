"""One LoRA training step on Gemma 3 270M (CPU): the loss over full logits (what a plain `model(..., labels=...)`
loop such as TRL's default computes) against `finetune.masking.batch_loss`, which projects onto the 262k-token
vocabulary only where a counselor token is predicted. Same conversations, same LoRA, forward + backward.

    python -m bench.sft_step_bench                  # 16 conversations of var/sft-gemma/train.jsonl
    python -m bench.sft_step_bench --examples 32 --micro 1 4

Needs the Gemma SFT data (`finetune prepare ... --tokenizer gemma3-270m-gguf --out var/sft-gemma`, docs/finetune.md).
Prints a markdown table and writes bench/out/sft_step.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from assistant.generation.models import load_tokenizer
from assistant.generation.models import GEMMA_GGUF_ALIAS, load_causal_lm
from finetune.formats import read_examples
from finetune.masking import batch_loss, collate, encode_segments, masked_loss

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def full_loss(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return masked_loss(logits, batch["labels"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "var/sft-gemma/train.jsonl")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--micro", type=int, nargs="+", default=[4, 1])
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = load_tokenizer(GEMMA_GGUF_ALIAS)
    model = load_causal_lm(GEMMA_GGUF_ALIAS, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, task_type="CAUSAL_LM"))
    data = [encode_segments(tok, e.segments, 1024) for e in read_examples(args.data)[: args.examples]]
    tokens = sum(len(e.input_ids) for e in data)
    trainable = sum(e.trainable_tokens for e in data)
    warm = collate(data[:1], tok.pad_token_id)
    batch_loss(model, warm)[0].backward()  # first-call allocations out of the timings
    model.zero_grad()
    rows = []
    for micro in args.micro:
        for name, fn in (("full logits", full_loss), ("counselor positions only", batch_loss)):
            total, t0 = 0.0, time.perf_counter()
            for i in range(0, len(data), micro):
                loss_sum, n = fn(model, collate(data[i:i + micro], tok.pad_token_id))
                (loss_sum / n).backward()
                total += float(loss_sum.detach())
            model.zero_grad(set_to_none=True)
            sec = (time.perf_counter() - t0) / len(data)
            rows.append({"micro_batch": micro, "loss": name, "s_per_conversation": round(sec, 3),
                         "loss_sum": round(total, 3)})
            print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    base = rows[0]["s_per_conversation"]
    print(f"\n{len(data)} conversations, {tokens / len(data):.0f} tokens each on average, "
          f"{trainable / tokens:.0%} of them counselor tokens; {torch.get_num_threads()} threads; peak RSS {peak:.1f} GB\n")
    print("| micro-batch | loss | s / conversation | vs full logits, micro-batch %d |" % rows[0]["micro_batch"])
    print("|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['micro_batch']} | {r['loss']} | {r['s_per_conversation']:.2f} | {base / r['s_per_conversation']:.2f}x |")
    out = ROOT / "bench/out/sft_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"conversations": len(data), "tokens": tokens, "trainable": trainable,
                               "threads": torch.get_num_threads(), "peak_rss_gb": round(peak, 2), "rows": rows},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
