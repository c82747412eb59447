"""Training configuration: pydantic models read from YAML, with dotted `--set key=value` overrides.

    finetune train --config finetune/configs/polyglot-ko-1.3b.yaml --set optim.lr=1e-4 --set batch.max_steps=200

Every key is checked: an unknown key lists the valid ones of its section, a wrong value says which key and what is
allowed (`ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from finetune.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class DataPaths(_Section):
    train: str = "var/sft/train.jsonl"
    val: str = "var/sft/val.jsonl"


class LoraSettings(_Section):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


class OptimSettings(_Section):
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


class BatchSettings(_Section):
    micro_batch_size: int = 4  # per device
    grad_accum: int = 8
    epochs: float = 2.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set


class TrainConfig(_Section):
    model: str = "EleutherAI/polyglot-ko-1.3b"  # hub id, local dir, or the alias gemma3-270m-gguf
    gguf_file: str | None = None
    data: DataPaths = Field(default_factory=DataPaths)
    output_dir: str = "var/runs/polyglot-ko-1.3b"
    seed: int = 42
    max_seq_len: int = 2048
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 (fp16) on GPU, fp32 on CPU
    quantization: Literal["none", "4bit"] = "none"  # 4bit: QLoRA, CUDA + bitsandbytes only
    gradient_checkpointing: StrictBool = True
    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    log_every: int = 10
    eval_every: int = 200  # optimizer steps; 0 = only before and after training
    save_every: int = 500  # optimizer steps; 0 = only at the end
    keep_checkpoints: int = 2
    max_val_examples: int | None = 500


_PLAIN = {"model_type": "must be a mapping of its keys", "tuple_type": "must be a list, e.g. [a, b]",
          "bool_type": "must be true or false", "bool_parsing": "must be true or false"}


def _section(loc: Sequence[str | int]) -> type[BaseModel]:
    """The model class of the section at `loc` (() = the top level)."""
    cls: type[BaseModel] = TrainConfig
    for key in loc:
        cls = cls.model_fields[str(key)].annotation  # type: ignore[assignment]  # sections are plain models
    return cls


def _explain(exc: ValidationError) -> ConfigError:
    """One message naming every wrong key and what is allowed there."""
    unknown: dict[tuple[str | int, ...], list[str]] = {}
    problems: list[str] = []
    for err in exc.errors():
        loc, key = tuple(err["loc"]), ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(key)
        elif err["input"] is None:
            problems.append(f"{key} may not be null")
        elif err["type"] in _PLAIN:
            problems.append(f"{key} {_PLAIN[err['type']]}, not {err['input']!r}")
        elif err["type"] == "missing":
            problems.append(f"{key} is missing")
        else:
            problems.append(f"{key}: {err['msg'][0].lower()}{err['msg'][1:]}, not {err['input']!r}")
    for section, keys in unknown.items():
        prefix = "".join(f"{p}." for p in section)
        problems.append(f"unknown config key(s) {', '.join(keys)}; "
                        f"valid here: {', '.join(prefix + k for k in _section(section).model_fields)}")
    return ConfigError("; ".join(problems) + " — fix the YAML or the --set override")


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
    raw: Any = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{path}: no such config — see finetune/configs/ for ready-made ones")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys (see finetune/configs/)")
    try:
        return TrainConfig.model_validate(apply_overrides(raw, overrides))
    except ValidationError as exc:
        raise _explain(exc) from None
