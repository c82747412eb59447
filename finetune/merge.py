"""`finetune merge`: fold a LoRA adapter into its base model (peft merge_and_unload) and save a plain model
directory that any transformers / vLLM / llama.cpp-convert tool can load without peft.

    finetune merge --model EleutherAI/polyglot-ko-5.8b --adapter var/runs/polyglot-ko-5.8b/adapter --out var/runs/merged
"""

from __future__ import annotations

import json
from pathlib import Path

from assistant.generation.models import load_adapter, load_causal_lm, load_tokenizer, pick_device, pick_dtype, read_adapter_info
from finetune.errors import FinetuneError


def merge(model: str, adapter: str, out: Path, *, gguf_file: str | None = None, dtype: str = "auto",
          device: str = "auto") -> Path:
    if out.exists() and any(out.iterdir()):
        raise FinetuneError(f"{out} is not empty: give a new directory for the merged model")
    dev = pick_device(device)
    tokenizer = load_tokenizer(model, gguf_file)
    base = load_causal_lm(model, gguf_file, dtype=pick_dtype(dtype, dev)).to(dev)
    merged = load_adapter(base, adapter).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = read_adapter_info(adapter)
    (out / "jinro_merged.json").write_text(json.dumps(
        {"merged_from": {"base_model": model, "gguf_file": gguf_file, "adapter": str(adapter)},
         "prompt_format": info.get("prompt_format"), "adapter_info": info or None}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8")
    return out
