"""`TransformersGenerator`: any causal LM through Hugging Face transformers, optionally with an unmerged LoRA adapter.

    gen = TransformersGenerator("EleutherAI/polyglot-ko-1.3b", adapter="var/runs/polyglot-ko-1.3b/adapter")
    rendered = render_prompt(parts, count_tokens=gen.count_tokens, max_context=gen.context_window)
    for piece in gen.stream(GenerationRequest(rendered.text, rendered.parts)):
        print(piece, end="")
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

from assistant.counselor.prompt import EOS_MARKER
from assistant.errors import GenerationError
from assistant.generation.base import GenerationRequest, cut_at_stop
from assistant.generation.models import (
    encode_prompt, load_adapter, load_causal_lm, load_tokenizer, pick_device,
    pick_dtype, read_adapter_info,
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
    ) -> None:
        dev = pick_device(device)
        tokenizer = load_tokenizer(model, gguf_file)
        lm = load_causal_lm(model, gguf_file, dtype=pick_dtype(dtype, dev))
        if adapter is not None:
            lm = load_adapter(lm, adapter)
        name = f"transformers:{model}" + (f"+{Path(adapter).name}" if adapter else "")
        self._setup(lm.to(dev), tokenizer, name=name, repetition_penalty=repetition_penalty,
                    temperature=temperature, top_p=top_p, context_window=context_window)
        self.adapter_info = read_adapter_info(adapter) if adapter else {}

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, *, name: str, repetition_penalty: float = 1.1,
                    temperature: float = 0.0, top_p: float = 0.9,
                    context_window: int | None = None) -> "TransformersGenerator":
        """Wrap a model already in memory (e.g. `finetune eval` toggling its adapter)."""
        gen = cls.__new__(cls)
        gen._setup(model, tokenizer, name=name, repetition_penalty=repetition_penalty, temperature=temperature,
                   top_p=top_p, context_window=context_window)
        gen.adapter_info = {}
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

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        ids = encode_prompt(self.tokenizer, request.prompt)
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
