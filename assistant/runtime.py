"""Building the counselor from plain settings values (the CLI and the API app factory call this)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from assistant.counselor.turn import Counselor, CounselorConfig
from assistant.errors import GenerationError
from assistant.generation.base import Generator
from assistant.generation.grounded import GroundedGenerator
from assistant.retrieval.hybrid import HybridRetriever
from ingest.knowledge import Knowledge, open_knowledge


def load_generator(spec: str, *, adapter: str | None = None, openai_model: str = "counselor",
                   openai_api_key: str | None = None) -> Generator:
    if spec == "grounded":
        return GroundedGenerator()
    if spec.startswith("transformers:"):
        from assistant.generation.transformers import TransformersGenerator

        return TransformersGenerator(spec.split(":", 1)[1], adapter=adapter)
    if spec.startswith("openai:"):
        from assistant.generation.openai import OpenAIGenerator

        return OpenAIGenerator(spec.split(":", 1)[1], model=openai_model, api_key=openai_api_key)
    raise GenerationError(f"unknown generator {spec!r} — use 'grounded', 'transformers:<model>' or 'openai:<base URL>'")


@dataclass
class Runtime:
    knowledge: Knowledge
    retriever: HybridRetriever
    counselor: Counselor


def build_runtime(db_url: str, index_dir: Path, embedder: str, generator: Generator, *,
                  idle_minutes: int | None = None, check_every: float = 2.0) -> Runtime:
    k = open_knowledge(db_url, index_dir, embedder)
    retriever = HybridRetriever(k.factory, k.embedder, k.store(), check_every=check_every)
    config = CounselorConfig(idle_timeout=timedelta(minutes=idle_minutes) if idle_minutes else None)
    return Runtime(k, retriever, Counselor(k.factory, retriever, generator, config))
