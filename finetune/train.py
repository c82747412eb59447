"""`finetune train`: LoRA (peft) on any causal LM with a plain, readable loop (nanochat style) under accelerate.

    finetune train --config finetune/configs/polyglot-ko-1.3b.yaml
    accelerate launch -m finetune.train --config finetune/configs/polyglot-ko-5.8b.yaml   # several GPUs (DDP)

One optimizer step = `grad_accum` micro-batches of `micro_batch_size` conversations on each process. The loss is
the mean cross-entropy over counselor tokens only (finetune.masking). Checkpoints (adapter + optimizer, scheduler,
RNG and step) go to output_dir/checkpoints/step-N; `--resume` continues from the latest one exactly where it
stopped (same data order). The final adapter is output_dir/adapter with jinro_adapter.json.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from assistant.generation.models import ADAPTER_INFO, load_causal_lm, load_tokenizer, pick_dtype
from assistant.counselor.prompt import PROMPT_FORMAT
from db.errors import JinroError
from finetune.config import TrainConfig, load_config
from finetune.console import console, fail
from finetune.errors import FinetuneError
from finetune.formats import read_examples
from finetune.masking import Encoded, batch_loss, collate, encode_segments, validation_loss


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    steps: int
    val_loss_before: float
    val_loss_after: float
    train_loss_last: float
    train_examples: int
    truncated_examples: int


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based): linear warmup, then cosine."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def micro_batches(n: int, micro: int, world: int, rank: int, seed: int, skip: int = 0) -> Iterator[list[int]]:
    """Example indices of this process's micro-batches, forever: epoch e is a `random.Random(seed + e)` shuffle,
    cut into global batches of micro*world (the incomplete tail is dropped); `skip` global batches are skipped."""
    size = min(micro * world, n)
    if size < world:
        raise FinetuneError(f"{n} training examples cannot feed {world} processes: prepare more data")
    k, epoch = 0, 0
    while True:
        order = list(range(n))
        random.Random(seed + epoch).shuffle(order)
        for start in range(0, n - size + 1, size):
            if k >= skip:
                yield order[start:start + size][rank::world]
            k += 1
        epoch += 1


def _load_model(cfg: TrainConfig, accelerator: Any) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    dtype = pick_dtype(cfg.dtype, accelerator.device.type)
    kwargs: dict[str, Any] = {}
    if cfg.quantization == "4bit":
        if not torch.cuda.is_available():
            raise FinetuneError("quantization: 4bit (QLoRA) needs a CUDA GPU; use quantization: none on this machine")
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise FinetuneError("quantization: 4bit needs bitsandbytes: pip install 'jinro[gpu]'") from exc
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": accelerator.local_process_index}
    model = load_causal_lm(cfg.model, cfg.gguf_file, dtype=dtype, **kwargs)
    model.config.use_cache = False
    if cfg.quantization == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias="none",
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise FinetuneError(f"LoRA target_modules {list(cfg.lora.target_modules)} do not fit {cfg.model} ({exc}); "
                            f"its linear layers are: {', '.join(names)}") from exc


def _encode(cfg: TrainConfig, tokenizer: Any, path: str, limit: int | None = None) -> tuple[list[Encoded], int]:
    examples = read_examples(Path(path))[:limit]
    wrong = {e.prompt_format for e in examples} - {PROMPT_FORMAT}
    if wrong:
        raise FinetuneError(f"{path} was rendered in prompt format {sorted(wrong)}, this code trains {PROMPT_FORMAT!r}: "
                            "rerun `finetune prepare`")
    encoded = [encode_segments(tokenizer, e.segments, cfg.max_seq_len) for e in examples]
    kept = [e for e in encoded if e.trainable_tokens > 0]
    return kept, sum(e.truncated for e in encoded)


def latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = sorted((output_dir / "checkpoints").glob("step-*"))
    return ckpts[-1] if ckpts else None


def save_adapter(model: Any, out: Path, cfg: TrainConfig, info: dict[str, Any]) -> None:
    model.save_pretrained(out, save_embedding_layers=False)  # LoRA weights only, even with lm_head targeted
    stats_file = Path(cfg.data.train).parent / "stats.json"
    meta = {
        "base_model": cfg.model, "gguf_file": cfg.gguf_file, "prompt_format": PROMPT_FORMAT, "adapter": "peft-lora",
        "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": list(cfg.lora.target_modules)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"train": cfg.data.train, "val": cfg.data.val,
                 "stats": json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else None},
        "training": {**info, "config": cfg.model_dump()},
    }
    (out / ADAPTER_INFO).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def train(cfg: TrainConfig, *, resume: bool | Path = False, log: Callable[[str], None] = print,
          progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train a LoRA adapter as `cfg` says. `resume=True` continues from the latest checkpoint, a Path from that one."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    accelerator = Accelerator(cpu=cfg.device == "cpu")
    main = accelerator.is_main_process
    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg.model, cfg.gguf_file)
    train_data, truncated = _encode(cfg, tokenizer, cfg.data.train)
    val_data, _ = _encode(cfg, tokenizer, cfg.data.val, cfg.max_val_examples)
    if not train_data:
        raise FinetuneError(f"{cfg.data.train}: no example has a counselor token within max_seq_len {cfg.max_seq_len}")
    model = _load_model(cfg, accelerator)
    if main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"{cfg.model}: {len(train_data)} train / {len(val_data)} val examples ({truncated} truncated to "
            f"{cfg.max_seq_len} tokens), {trainable:,} trainable LoRA parameters on {accelerator.device}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas)
    world, micro, accum = accelerator.num_processes, cfg.batch.micro_batch_size, cfg.batch.grad_accum
    total = cfg.batch.max_steps or max(1, math.ceil(cfg.batch.epochs * len(train_data) / (micro * accum * world)))
    o = cfg.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, o.warmup_steps, o.schedule, o.min_lr_ratio))
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    pad_id = tokenizer.pad_token_id

    def val_loss() -> float:
        return validation_loss(raw, val_data, pad_id=pad_id, batch_size=micro, device=accelerator.device)[0]

    step, val_before = 0, math.nan
    if resume:
        ckpt = latest_checkpoint(out) if resume is True else Path(resume)
        if ckpt is None or not (ckpt / "state.pt").is_file():
            raise FinetuneError(f"nothing to resume in {out / 'checkpoints'}: train without --resume first")
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        set_peft_model_state_dict(raw, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, val_before = state["step"], state["val_loss_before"]
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        if main:
            log(f"resumed from {ckpt} at step {step}")
    else:
        val_before = val_loss()
        if main:
            log(f"validation loss before training: {val_before:.4f} (perplexity {math.exp(min(val_before, 50)):.1f})")

    def checkpoint() -> None:
        accelerator.wait_for_everyone()
        if not main:
            return
        ckpt = out / "checkpoints" / f"step-{step:06d}"
        raw.save_pretrained(ckpt / "adapter", save_embedding_layers=False)
        torch.save({"step": step, "val_loss_before": val_before, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "config": cfg.model_dump(),
                    "rng": {"python": random.getstate(), "torch": torch.get_rng_state()}}, ckpt / "state.pt")
        for old in sorted((out / "checkpoints").glob("step-*"))[:-max(1, cfg.keep_checkpoints)]:
            shutil.rmtree(old)

    batches = micro_batches(len(train_data), micro, world, accelerator.process_index, cfg.seed, skip=step * accum)
    model.train()
    last_loss, t0, tokens = math.nan, time.perf_counter(), 0
    while step < total:
        step_loss = 0.0
        for k in range(accum):
            batch = {key: v.to(accelerator.device) for key, v in collate([train_data[i] for i in next(batches)], pad_id).items()}
            sync = k == accum - 1
            with nullcontext() if sync else accelerator.no_sync(model):
                loss_sum, n = batch_loss(model, batch)
                loss = loss_sum / n.clamp(min=1) / accum
                accelerator.backward(loss)
            step_loss += float(loss.detach())
            tokens += int(batch["attention_mask"].sum())
        if o.grad_clip:
            accelerator.clip_grad_norm_(params, o.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last_loss = step_loss
        if progress and main:
            progress(step, total)
        if main and (step % max(1, cfg.log_every) == 0 or step == total):
            rate = tokens * world / max(1e-9, time.perf_counter() - t0)
            log(f"step {step}/{total}  loss {last_loss:.4f}  lr {scheduler.get_last_lr()[0]:.2e}  {rate:,.0f} tok/s")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < total and main:
            log(f"step {step}: validation loss {val_loss():.4f}")
        if cfg.save_every and step % cfg.save_every == 0 and step < total:
            checkpoint()
    checkpoint()
    val_after = val_loss() if main else math.nan
    adapter_dir = out / "adapter"
    if main:
        log(f"validation loss after training: {val_after:.4f} (perplexity {math.exp(min(val_after, 50)):.1f})")
        save_adapter(raw, adapter_dir, cfg, {"steps": step, "seed": cfg.seed, "val_loss_before": val_before,
                                             "val_loss_after": val_after, "train_loss_last": last_loss,
                                             "train_examples": len(train_data), "truncated_examples": truncated})
    accelerator.wait_for_everyone()
    return TrainResult(adapter_dir, step, val_before, val_after, last_loss, len(train_data), truncated)


def train_command(
    config: Path = typer.Option(..., help="YAML config (see finetune/configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set optim.lr=1e-4 (repeatable)."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in output_dir."),
    resume_from: Optional[Path] = typer.Option(None, help="Continue from this checkpoint directory."),
) -> None:
    """Train a LoRA adapter (multi-GPU: accelerate launch -m finetune.train --config ...).

    Example: finetune train --config finetune/configs/polyglot-ko-1.3b.yaml --set batch.max_steps=200
    """
    try:
        cfg = load_config(config, set_)
        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("steps", total=None)
            result = train(cfg, resume=resume_from or resume, log=console.print,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    except JinroError as exc:
        raise fail(exc) from exc
    console.print(f"adapter: {result.adapter_dir}  (validation loss {result.val_loss_before:.4f} -> "
                  f"{result.val_loss_after:.4f} in {result.steps} steps)")


if __name__ == "__main__":  # accelerate launch -m finetune.train --config ...
    main = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    main.command()(train_command)
    main()
