"""`finetune eval`: validation loss / perplexity on counselor tokens with and without the adapter, and sample
answers to fixed prompts, written as a markdown report plus the same numbers as JSON (report.md -> report.json).

    finetune eval --model EleutherAI/polyglot-ko-1.3b --adapter var/runs/polyglot-ko-1.3b/adapter \\
        --data var/sft/val.jsonl --report var/runs/polyglot-ko-1.3b/eval.md
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.retrieval.facts import OccupationFacts
from assistant.generation.base import GenerationRequest
from assistant.generation.models import load_adapter, load_causal_lm, load_tokenizer, pick_device, pick_dtype
from assistant.generation.transformers import TransformersGenerator
from assistant.counselor.fact_block import fact_block
from assistant.counselor.prompt import STOP_SEQUENCES, PromptParts, Turn, render_prompt
from finetune.formats import read_examples
from finetune.masking import encode_segments, validation_loss

_NURSE = OccupationFacts(
    0, "K000007494", "간호사", "job:K000007494",
    "병원에서 의사의 진료를 보조하거나 의사의 처방이나 규정된 간호기술에 따라 서비스를 제공하며, 가정이나 지역사회를 "
    "대상으로 건강의 회복, 유지와 증진을 돕는다.", "14년 초과 ~ 16년 이하(대졸 정도)", "1년 초과 ~ 2년 이하", ("간호사",), (),
    ("가정전문간호사", "감염전문간호사", "노인전문간호사", "아동전문간호사", "응급전문간호사"), "간호사", 2017)
_WEB = OccupationFacts(
    0, "K000007463", "웹디자이너", "job:K000007463", "웹사이트 개발에 필요한 디자인 및 구성요소를 개발한다.",
    "12년 초과 ~ 14년 이하(전문대졸 정도)", "1년 초과 ~ 2년 이하", (), (), ("멀티미디어디자이너",), "미디어 콘텐츠 디자이너", 2012)

# the fixed prompts every report answers: facts, a follow-up with no certificate, an unanswerable question, chit-chat
FIXED_PROMPTS: tuple[tuple[str, PromptParts], ...] = (
    ("nurse-duties", PromptParts(facts=(fact_block(_NURSE),), question="간호사는 무슨 일을 해요?")),
    ("web-nocert-followup", PromptParts(
        profile_lines=("학년: 고2", "관심 분야: 그림, 디자인"), facts=(fact_block(_WEB),),
        history=(Turn("student", "웹디자이너 어때요?"), Turn("counselor", "웹디자이너는 웹사이트 개발에 필요한 디자인을 해요.")),
        question="그 직업은 자격증 필요해?")),
    ("nurse-salary", PromptParts(facts=(fact_block(_NURSE),), question="간호사 연봉은 얼마나 돼요?")),
    ("chitchat", PromptParts(question="요즘 공부가 너무 힘들어요")),
)


@dataclass
class EvalReport:
    model: str
    adapter: str
    data: str
    examples: int
    counselor_tokens: int
    base_loss: float
    adapter_loss: float
    samples: list[dict[str, str]] = field(default_factory=list)

    @property
    def base_perplexity(self) -> float:
        return math.exp(min(self.base_loss, 50))

    @property
    def adapter_perplexity(self) -> float:
        return math.exp(min(self.adapter_loss, 50))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "base_perplexity": self.base_perplexity, "adapter_perplexity": self.adapter_perplexity}

    def markdown(self) -> str:
        lines = [
            f"# Fine-tune evaluation: `{self.adapter}`", "",
            f"- base model: `{self.model}`", f"- data: `{self.data}` ({self.examples} conversations, "
            f"{self.counselor_tokens:,} counselor tokens scored)", "",
            "| | loss (counselor tokens) | perplexity |", "|---|---:|---:|",
            f"| base | {self.base_loss:.4f} | {self.base_perplexity:.2f} |",
            f"| base + adapter | {self.adapter_loss:.4f} | {self.adapter_perplexity:.2f} |", "",
            "## Sample answers (greedy)", "",
        ]
        for s in self.samples:
            lines += [f"### {s['name']}", "", f"**질문:** {s['question']}", "",
                      f"**base:** {s['base'] or '(empty)'}", "", f"**adapter:** {s['adapter'] or '(empty)'}", ""]
        return "\n".join(lines)


def _answer(gen: TransformersGenerator, parts: PromptParts, max_new_tokens: int) -> str:
    rendered = render_prompt(parts, count_tokens=gen.count_tokens, max_context=min(gen.context_window, 2048),
                             reserve_for_answer=max_new_tokens)
    request = GenerationRequest(rendered.text, rendered.parts, max_new_tokens, STOP_SEQUENCES)
    return "".join(gen.stream(request)).strip()


def evaluate(model: str, adapter: str, data: Path, report: Path, *, gguf_file: str | None = None,
             max_examples: int | None = 200, samples: bool = True, max_new_tokens: int = 96,
             device: str = "auto", batch_size: int = 4) -> EvalReport:
    dev = pick_device(device)
    tokenizer = load_tokenizer(model, gguf_file)
    base = load_causal_lm(model, gguf_file, dtype=pick_dtype("auto", dev)).to(dev)
    peft_model = load_adapter(base, adapter)
    encoded = [encode_segments(tokenizer, e.segments, getattr(base.config, "max_position_embeddings", None))
               for e in read_examples(data)[:max_examples]]
    pad = tokenizer.pad_token_id
    with peft_model.disable_adapter():
        base_loss, n_tokens = validation_loss(peft_model, encoded, pad_id=pad, batch_size=batch_size)
    adapter_loss, _ = validation_loss(peft_model, encoded, pad_id=pad, batch_size=batch_size)
    result = EvalReport(model, str(adapter), str(data), len(encoded), n_tokens, base_loss, adapter_loss)
    if samples:
        gen = TransformersGenerator.from_loaded(peft_model, tokenizer, name=f"{model}+adapter")
        for name, parts in FIXED_PROMPTS:
            with peft_model.disable_adapter():
                before = _answer(gen, parts, max_new_tokens)
            result.samples.append({"name": name, "question": parts.question, "base": before,
                                   "adapter": _answer(gen, parts, max_new_tokens)})
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(result.markdown() + "\n", encoding="utf-8")
    report.with_suffix(".json").write_text(json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    return result
