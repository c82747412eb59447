"""Opening the knowledge DB and its vector index from plain arguments (the CLIs and the API call this)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import create_db_engine, session_factory
from db.settings import Settings
from db.errors import VectorIndexError
from db.migrate import upgrade
from db.vectorstore import FaissStore, VectorStore, index_paths
from ingest.embedding import E5Embedder, Embedder, UniversalSentenceEncoder, resolve_embedder
from ingest.shipped import SHIPPED_DIR, with_shipped


@dataclass
class Knowledge:
    engine: Engine
    factory: sessionmaker[Session]
    index_dir: Path
    embedder_spec: str
    index_kind: str = "flat"
    _embedder: Embedder | None = None
    vector_store: str = "faiss"  # "faiss" | "pgvector" (the edges pass settings.vector_store)
    e5_engine: str | None = None
    shipped_dir: Path | None = SHIPPED_DIR
    embedder_notes: list[str] = field(default_factory=list)
    """Why the embedder is not quite what was asked for (the e5 fallback, an unusable shipped-vector file)."""

    @property
    def embedder(self) -> Embedder:
        """The configured embedder (loaded on first use), with the shipped vectors of its model when there are."""
        if self._embedder is None:
            embedder, note = resolve_embedder(self.embedder_spec, e5_engine=self.e5_engine)
            if self.shipped_dir is not None:
                embedder, shipped_note = with_shipped(embedder, self.shipped_dir)
                note = "; ".join(n for n in (note, shipped_note) if n) or None
            self.embedder_notes = [note] if note else []
            if note:
                logging.getLogger("jinro.ingest").warning("embedder: %s", note)
            self._embedder = embedder
        return self._embedder

    def store(self, *, load: bool = True) -> VectorStore:
        """The index for the configured model: a FaissStore under index_dir, or with vector_store="pgvector" the
        shared PgVectorStore in the DB. Needs no embedder when the index file already names its dim."""
        model_id, dim = self.embedder_spec, None
        if model_id == UniversalSentenceEncoder.model_id:
            dim = UniversalSentenceEncoder.dim
        elif self.vector_store == "pgvector" or model_id == E5Embedder.model_id:  # it may fall back to USE: load it
            model_id, dim = self.embedder.model_id, self.embedder.dim
        else:
            _, meta = index_paths(self.index_dir, model_id)
            if meta.exists():
                dim = int(json.loads(meta.read_text())["dim"])
            else:
                model_id, dim = self.embedder.model_id, self.embedder.dim
        if self.vector_store == "pgvector":
            from db.pgvector import PgVectorStore

            pg = PgVectorStore(self.engine, model_id, dim)
            return pg.load() if load else pg
        if self.vector_store != "faiss":
            raise VectorIndexError(f"unknown vector store {self.vector_store!r}: use 'faiss' or 'pgvector'")
        store = FaissStore(self.index_dir, model_id, dim, kind=self.index_kind)
        return store.load() if load else store


def open_knowledge(db_url: str, index_dir: Path, embedder_spec: str, *, migrate: bool = True,
                   index_kind: str = "flat", embedder: Embedder | None = None,
                   vector_store: str = "faiss", e5_engine: str | None = None,
                   shipped_dir: Path | None = SHIPPED_DIR) -> Knowledge:
    """vector_store: "faiss" or "pgvector"; the edges (CLIs, the API) pass the deployment's `settings.vector_store`
    and `settings.e5_engine`. `shipped_dir`: where shipped vectors are looked up (None: embed everything)."""
    engine = create_db_engine(db_url)
    if migrate:
        upgrade(engine)
    return Knowledge(engine, session_factory(engine), index_dir, embedder_spec, index_kind, embedder, vector_store,
                     e5_engine, shipped_dir)


def open_configured(settings: Settings, db_url: str | None = None, *, migrate: bool = True,
                    index_kind: str = "flat") -> Knowledge:
    """The knowledge DB a deployment's settings describe (the edges call this): `db_url` overrides the settings'
    database (a `--db` option)."""
    return open_knowledge(settings.database_url(db_url), settings.index_dir, settings.embedder, migrate=migrate,
                          index_kind=index_kind, vector_store=settings.vector_store, e5_engine=settings.e5_engine)
