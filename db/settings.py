"""Settings read from `JINRO_*` environment variables (and a `.env` file).

Only the edges (CLIs, the API app factory) build a `Settings`; everything below them takes plain arguments.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "use-multilingual-v3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JINRO_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    """Where the SQLite file (by default), the vector index and caches live."""
    db_url: str | None = None
    """SQLAlchemy URL; default `sqlite:///<data_dir>/jinro.db`. PostgreSQL: `postgresql://user@host/db`."""
    embedder: str = DEFAULT_EMBEDDER
    """`use-multilingual-v3` (offline default) or `st:<path or hub id>` for a sentence-transformers model."""
    chunk_size: int = 600
    """Target chunk length in characters (sentences are never split unless one alone is longer)."""
    chunk_overlap: int = 120
    """Characters of trailing sentences repeated at the start of the next chunk."""

    generator: str = "grounded"
    """`grounded` (no LLM, offline default), `transformers:<hub id or path>` or `openai:<base URL>`."""
    adapter: str | None = None
    """A PEFT LoRA adapter directory for the transformers generator (from `finetune train`)."""
    openai_model: str = "counselor"
    """Model name sent to an OpenAI-compatible server (vLLM: the --lora-modules name)."""
    openai_api_key: str | None = None
    session_idle_minutes: int = 60 * 24 * 30
    """Sessions idle for longer than this are expired (erased)."""

    def database_url(self, override: str | None = None) -> str:
        if override:
            return override
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'jinro.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
