"""Opening the knowledge DB and its vector index from plain arguments (the CLIs and the API call this)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import create_db_engine, session_factory
from db.migrate import upgrade
from db.vectorstore import FaissStore, index_paths
from ingest.embedding import Embedder, UniversalSentenceEncoder, load_embedder


@dataclass
class Knowledge:
    engine: Engine
    factory: sessionmaker[Session]
    index_dir: Path
    embedder_spec: str
    index_kind: str = "flat"
    _embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.embedder_spec)
        return self._embedder

    def store(self, *, load: bool = True) -> FaissStore:
        """The index for the configured model. Needs no embedder when the index file already names its dim."""
        model_id, dim = self.embedder_spec, None
        if model_id == UniversalSentenceEncoder.model_id:
            dim = UniversalSentenceEncoder.dim
        else:
            _, meta = index_paths(self.index_dir, model_id)
            if meta.exists():
                dim = int(json.loads(meta.read_text())["dim"])
            else:
                model_id, dim = self.embedder.model_id, self.embedder.dim
        store = FaissStore(self.index_dir, model_id, dim, kind=self.index_kind)
        return store.load() if load else store


def open_knowledge(db_url: str, index_dir: Path, embedder_spec: str, *, migrate: bool = True,
                   index_kind: str = "flat", embedder: Embedder | None = None) -> Knowledge:
    engine = create_db_engine(db_url)
    if migrate:
        upgrade(engine)
    return Knowledge(engine, session_factory(engine), index_dir, embedder_spec, index_kind, embedder)
