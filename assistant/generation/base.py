"""The one generator interface every answer source implements (`Generator`), and what it is given (`GenerationRequest`).

Implementations: `grounded` (no LLM), `transformers` (a local causal LM), `openai` (an OpenAI-compatible server).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

from assistant.counselor.prompt import EOS_MARKER, PromptParts


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str  # rendered, within budget
    parts: PromptParts  # the structured pieces it came from (a non-LLM generator composes from these)
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ("\n### ",)


@runtime_checkable
class Generator(Protocol):
    name: str
    context_window: int

    def count_tokens(self, text: str) -> int: ...

    def stream(self, request: GenerationRequest) -> Iterator[str]: ...  # yields text pieces


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    hits = [text.find(s) for s in stops if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)


def split_persona(prompt: str, persona: str) -> tuple[str | None, str]:
    """(system, user) for chat mode: the persona the prompt starts with, and the rest with EOS markers removed."""
    norm = unicodedata.normalize("NFC", persona.replace("\r\n", "\n").replace("\r", "\n")).strip()
    system = None
    if norm and prompt.startswith(norm + "\n"):
        system, prompt = norm, prompt[len(norm):].lstrip("\n")
    return system, prompt.replace(EOS_MARKER, "")
