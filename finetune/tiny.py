"""A tiny Polyglot-Ko-shaped model (GPT-NeoX, random weights) with a byte-level BPE tokenizer trained on the
project's own Korean text. It proves the pipeline end to end on a CPU in seconds; it says nothing about quality.

    finetune tiny-model --out var/tiny-neox
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.counselor.prompt import ANSWER_HEADER, CONTEXT_HEADER, DEFAULT_PERSONA, EOS_MARKER, QUESTION_HEADER

PAD = "<|padding|>"
ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"
CHITCHAT = ROOT / "data" / "chatbot_data" / "ChatbotData.csv"


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 3000
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    max_positions: int = 2048
    corpus_lines: int = 4000
    seed: int = 0


def corpus(max_lines: int) -> list[str]:
    """Korean lines from the job dictionary and the chatbot data, plus the prompt format's fixed strings."""
    lines = [DEFAULT_PERSONA, CONTEXT_HEADER, QUESTION_HEADER, ANSWER_HEADER] * 20
    with JOBS.open(encoding="utf-8") as fh:
        for line in fh:
            if len(lines) >= max_lines // 2:
                break
            obj = json.loads(line)
            info = obj.get("optionJobInfo") or {}
            lines += [obj.get("dJobNm", ""), obj.get("workSum", ""), info.get("certLic") or "", info.get("eduLevel") or ""]
    with CHITCHAT.open(encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if i and len(lines) < max_lines:
                lines += row[:2]
    return [x for x in lines if x]


def build_tiny_tokenizer(out: Path, spec: TinySpec = TinySpec()) -> Any:
    """Train a byte-level BPE (GPT-NeoX style, EOS `<|endoftext|>`) on `corpus()` and save it to `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size, special_tokens=[EOS_MARKER, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus(spec.corpus_lines), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS_MARKER, bos_token=EOS_MARKER,
                                  unk_token=EOS_MARKER, pad_token=PAD)
    tok.save_pretrained(out)
    return tok


def build_tiny_model(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a tokenizer + randomly initialised GPTNeoXForCausalLM to `out` (a normal local model directory)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tok = build_tiny_tokenizer(out, spec)
    config = GPTNeoXConfig(
        vocab_size=len(tok), hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, intermediate_size=spec.hidden_size * 4,
        max_position_embeddings=spec.max_positions, rotary_pct=0.5, use_parallel_residual=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    GPTNeoXForCausalLM(config).save_pretrained(out)
    return out
