"""Training configuration: typed dataclasses read from YAML, with dotted `--set key=value` overrides.

    finetune train --config finetune/configs/polyglot-ko-1.3b.yaml --set optim.lr=1e-4 --set batch.max_steps=200
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from finetune.errors import ConfigError


@dataclass(frozen=True)
class DataPaths:
    train: str = "var/sft/train.jsonl"
    val: str = "var/sft/val.jsonl"


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


@dataclass(frozen=True)
class BatchSettings:
    micro_batch_size: int = 4  # per device
    grad_accum: int = 8
    epochs: float = 2.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set


@dataclass(frozen=True)
class TrainConfig:
    model: str = "EleutherAI/polyglot-ko-1.3b"  # hub id, local dir, or the alias gemma3-270m-gguf
    gguf_file: str | None = None
    data: DataPaths = field(default_factory=DataPaths)
    output_dir: str = "var/runs/polyglot-ko-1.3b"
    seed: int = 42
    max_seq_len: int = 2048
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 (fp16) on GPU, fp32 on CPU
    quantization: str = "none"  # none | 4bit (QLoRA, CUDA + bitsandbytes only)
    gradient_checkpointing: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    log_every: int = 10
    eval_every: int = 200  # optimizer steps; 0 = only before and after training
    save_every: int = 500  # optimizer steps; 0 = only at the end
    keep_checkpoints: int = 2
    max_val_examples: int | None = 500

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, typ: str, key: str) -> Any:
    """`value` as the annotated type `typ` (annotations are strings here: `from __future__ import annotations`)."""
    if value is None:
        if "None" in typ:
            return None
        raise ConfigError(f"{key} may not be null")
    if typ in _SECTIONS:
        return _build(_SECTIONS[typ], value, key + ".")
    if typ.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, e.g. [a, b]")
        return tuple(value)
    base = typ.split(" |")[0]
    py = {"bool": bool, "int": int, "float": float, "str": str}.get(base)
    if py is None:
        return value
    if py is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    if py is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{key} must be a whole number, not {value!r}")
    try:
        return py(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be {base}, not {value!r}") from exc


def _build(cls: Any, values: Any, prefix: str = "") -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping")
    known = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
                          f"valid here: {', '.join(prefix + k for k in known)}")
    return cls(**{k: _coerce(v, known[k], prefix + k) for k, v in values.items()})


_SECTIONS = {"DataPaths": DataPaths, "LoraSettings": LoraSettings, "OptimSettings": OptimSettings,
             "BatchSettings": BatchSettings}


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings (dotted keys, YAML values) applied to the raw config mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write key=value, e.g. --set optim.lr=1e-4")
        node = raw
        *path, last = key.strip().split(".")
        for p in path:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[last] = yaml.safe_load(value)
    return raw


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{path}: no such config — see finetune/configs/ for ready-made ones")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    cfg = _build(TrainConfig, apply_overrides(raw, overrides))
    if cfg.quantization not in ("none", "4bit"):
        raise ConfigError(f"quantization {cfg.quantization!r}: use none or 4bit")
    if cfg.optim.schedule not in ("cosine", "constant"):
        raise ConfigError(f"optim.schedule {cfg.optim.schedule!r}: use cosine or constant")
    return cfg
