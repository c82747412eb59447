"""`TransformersGenerator`: any causal LM through Hugging Face transformers, optionally with an unmerged LoRA adapter.

    gen = TransformersGenerator("EleutherAI/polyglot-ko-1.3b", adapter="var/runs/polyglot-ko-1.3b/adapter")
    rendered = render_prompt(parts, count_tokens=gen.count_tokens, max_context=gen.context_window)
    for piece in gen.stream(GenerationRequest(rendered.text, rendered.parts)):
        print(piece, end="")

An instruct model reads the rendered prompt through its chat template (`chat=True`; the default for the alias
`qwen2.5-coder-1.5b`): the persona as the system message, the rendered prompt after it as the user's. A GGUF is dequantized
at every load (140 s for Qwen 1.5B on two cores); with `cache_dir` the converted weights are saved there once, in the
load dtype, and later loads read them (10 s).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

from assistant.counselor.prompt import EOS_MARKER
from assistant.errors import GenerationError
from assistant.generation.base import GenerationRequest, cut_at_stop, split_persona
from assistant.generation.models import (
    QWEN_GGUF_ALIAS, available_memory, check_memory, encode_prompt, load_adapter, load_causal_lm, load_tokenizer,
    pick_device, pick_dtype, read_adapter_info, resolve_model,
)


# ---------------------------------------------------------------- the transformers generator

class _StopOnText:
    """Stopping criterion: the generated text contains a stop string, or the consumer went away."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: tuple[str, ...], cancel: threading.Event) -> None:
        self.tokenizer, self.prompt_len, self.stops, self.cancel = tokenizer, prompt_len, stops, cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        text = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=True)
        done = self.cancel.is_set() or any(s in text for s in self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)



class TransformersGenerator:
    """Any causal LM (hub id, local directory, GGUF, or the alias `gemma3-270m-gguf`) with an optional unmerged LoRA
    adapter; greedy by default (temperature 0), streaming through TextIteratorStreamer on a thread."""

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        gguf_file: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        repetition_penalty: float = 1.1,
        temperature: float = 0.0,
        top_p: float = 0.9,
        context_window: int | None = None,
        chat: bool | None = None,
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """chat: read the prompt through the tokenizer's chat template (default: for the Qwen alias, unless the
        adapter was trained by `finetune train`, which trains on the plain prompt format);
        threads: torch's CPU threads (default: half the cores, at least one — two threads on two busy cores were
        5-8x slower than one); cache_dir: where a GGUF's converted weights are kept between loads."""
        dev = pick_device(device)
        if dev == "cpu":
            import torch

            torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) // 2))
        torch_dtype = pick_dtype(dtype, dev)
        trained_plain = adapter is not None and bool(read_adapter_info(adapter).get("prompt_format"))
        self.chat = chat if chat is not None else model == QWEN_GGUF_ALIAS and not trained_plain
        model, gguf_file, convert_to = self._converted(model, gguf_file, torch_dtype, cache_dir)
        if gguf_file is not None and dev == "cpu":  # dequantized at load: Q4 weights grow ~6x in fp32
            path = Path(resolve_model(model, gguf_file)[0]) / gguf_file
            factor = 6 if torch_dtype.itemsize == 4 else 3
            check_memory(path.stat().st_size * factor, f"{path.name} in {torch_dtype}", available_memory())
        tokenizer = load_tokenizer(model, gguf_file)
        lm = load_causal_lm(model, gguf_file, dtype=torch_dtype)
        if convert_to is not None:
            self._save_converted(lm, tokenizer, convert_to)
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise GenerationError(f"{model} has no chat template: load it with chat=False (the plain prompt format)")
        if adapter is not None:
            lm = load_adapter(lm, adapter)
        name = f"transformers:{model}" + (f"+{Path(adapter).name}" if adapter else "")
        self._setup(lm.to(dev), tokenizer, name=name, repetition_penalty=repetition_penalty,
                    temperature=temperature, top_p=top_p, context_window=context_window)
        self.adapter_info = read_adapter_info(adapter) if adapter else {}

    @staticmethod
    def _converted_dir(cache_dir: Path, gguf_file: str, dtype: Any) -> Path:
        return Path(cache_dir) / f"{Path(gguf_file).stem}-{str(dtype).removeprefix('torch.')}"

    @classmethod
    def _converted(cls, model: str, gguf_file: str | None, dtype: Any,
                   cache_dir: Path | None) -> tuple[str, str | None, Path | None]:
        """(model, gguf file, where to keep the conversion): a GGUF model's converted copy when `cache_dir` has it,
        else the model as given and, for a GGUF with a `cache_dir`, the directory its conversion goes to."""
        if cache_dir is None:
            return model, gguf_file, None
        path, gguf = resolve_model(model, gguf_file)
        if gguf is None:
            return model, gguf_file, None
        done = cls._converted_dir(cache_dir, gguf, dtype)
        return (str(done), None, None) if (done / "config.json").is_file() else (path, gguf, done)

    @staticmethod
    def _save_converted(lm: Any, tokenizer: Any, target: Path) -> None:
        """Save the dequantized weights and the tokenizer (through a temporary directory, renamed when complete)."""
        import copy
        import shutil

        from safetensors.torch import save_model

        partial = target.with_name(target.name + ".partial")
        try:  # transformers refuses save_pretrained for a model loaded from GGUF: the weights are plain tensors now
            partial.mkdir(parents=True, exist_ok=True)
            save_model(lm, str(partial / "model.safetensors"))  # tied weights (embeddings, lm_head) stored once
            config = copy.deepcopy(lm.config)
            for key in ("quantization_config", "_pre_quantization_dtype"):
                if hasattr(config, key):
                    delattr(config, key)
            config.save_pretrained(partial)
            if lm.generation_config is not None:
                lm.generation_config.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            partial.replace(target)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise GenerationError(f"cannot keep the converted weights in {target.parent} ({exc}): free disk space "
                                  "there or load without cache_dir") from exc

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, *, name: str, repetition_penalty: float = 1.1,
                    temperature: float = 0.0, top_p: float = 0.9,
                    context_window: int | None = None) -> "TransformersGenerator":
        """Wrap a model already in memory (e.g. `finetune eval` toggling its adapter)."""
        gen = cls.__new__(cls)
        gen._setup(model, tokenizer, name=name, repetition_penalty=repetition_penalty, temperature=temperature,
                   top_p=top_p, context_window=context_window)
        gen.adapter_info, gen.chat = {}, False
        return gen

    def _setup(self, model: Any, tokenizer: Any, *, name: str, repetition_penalty: float, temperature: float,
               top_p: float, context_window: int | None) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self._lock = threading.Lock()  # one generation at a time per model (an API server queues requests here)
        self.repetition_penalty, self.temperature, self.top_p = repetition_penalty, temperature, top_p
        cfg = model.config
        self.context_window = context_window or getattr(cfg, "max_position_embeddings", None) or 2048

    def count_tokens(self, text: str) -> int:
        return len(encode_prompt(self.tokenizer, text))

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids: the prompt format as it is, or inside the chat template (`chat`)."""
        if not self.chat:
            return encode_prompt(self.tokenizer, request.prompt)
        system, user = split_persona(request.prompt, request.parts.persona)  # the persona once, as the system's
        messages = [{"role": "system", "content": system or request.parts.persona}, {"role": "user", "content": user}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding in newer transformers

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        ids = self.prompt_ids(request)
        room = self.context_window - len(ids)
        if room <= 0:
            raise GenerationError(
                f"the prompt has {len(ids)} tokens but the context window is {self.context_window}: render it with "
                "render_prompt(parts, count_tokens=generator.count_tokens, max_context=generator.context_window)")
        stops = tuple(dict.fromkeys((*request.stop, EOS_MARKER)))
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        cancel = threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = self.temperature > 0
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
            max_new_tokens=min(request.max_new_tokens, room), do_sample=sampling,
            repetition_penalty=self.repetition_penalty, eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([_StopOnText(self.tokenizer, len(ids), stops, cancel)]),
        )
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:  # models ship generation configs with sampling defaults; greedy must not warn about them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the consuming thread
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name=f"generate:{self.name}", daemon=True)
        thread.start()
        hold = max(len(s) for s in stops) - 1  # keep back what could be the start of a stop string
        buffer, ended = "", False
        try:
            for piece in streamer:
                buffer += piece
                text, stopped = cut_at_stop(buffer, stops)
                if stopped:
                    if text:
                        yield text
                    buffer = ""
                    break
                if len(buffer) > hold:
                    yield buffer[:len(buffer) - hold]
                    buffer = buffer[len(buffer) - hold:]
            else:
                ended = True
                if buffer:
                    yield buffer
        finally:
            cancel.set()
            if not ended:  # drain so the generating thread can finish (the stop criterion ends it at once)
                for _ in streamer:
                    pass
            thread.join()
        if errors:
            raise GenerationError(f"{self.name} failed while generating: {errors[0]}") from errors[0]
