"""Opening the knowledge DB and its vector index from plain arguments (the CLIs and the API call this)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import create_db_engine, session_factory
from db.errors import VectorIndexError
from db.migrate import upgrade
from db.vectorstore import FaissStore, VectorStore, index_paths
from ingest.embedding import Embedder, UniversalSentenceEncoder, load_embedder


@dataclass
class Knowledge:
    engine: Engine
    factory: sessionmaker[Session]
    index_dir: Path
    embedder_spec: str
    index_kind: str = "flat"
    _embedder: Embedder | None = None
    vector_store: str = "faiss"  # "faiss" | "pgvector" (the edges pass settings.vector_store)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.embedder_spec)
        return self._embedder

    def store(self, *, load: bool = True) -> VectorStore:
        """The index for the configured model: a FaissStore under index_dir, or with vector_store="pgvector" the
        shared PgVectorStore in the DB. Needs no embedder when the index file already names its dim."""
        model_id, dim = self.embedder_spec, None
        if model_id == UniversalSentenceEncoder.model_id:
            dim = UniversalSentenceEncoder.dim
        elif self.vector_store == "pgvector":
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
                   vector_store: str = "faiss") -> Knowledge:
    """vector_store: "faiss" or "pgvector"; the edges (CLIs, the API) pass the deployment's `settings.vector_store`."""
    engine = create_db_engine(db_url)
    if migrate:
        upgrade(engine)
    return Knowledge(engine, session_factory(engine), index_dir, embedder_spec, index_kind, embedder, vector_store)
