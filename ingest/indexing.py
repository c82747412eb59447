"""Keeping the vector index in step with the DB: sync, verify, reindex.

The DB is the source of truth (each chunk stores its vector); the index is derived from it. `sync_index` adds
what the index lacks and removes what the DB no longer has, so re-running any command repairs a run that was
killed between its DB commit and its index write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Chunk, Document, KnowledgeState
from db.vectorstore import VectorStore
from ingest.chunking import chunk_context
from ingest.embedding import Embedder
from ingest.pipeline import bump_version


@dataclass(frozen=True)
class IndexDiff:
    db_chunks: int
    index_vectors: int
    missing: np.ndarray  # chunk ids in the DB (embedded with the store's model) but not in the index
    orphans: np.ndarray  # ids in the index with no such chunk in the DB
    unembedded: int  # chunks with no vector for the store's model

    @property
    def ok(self) -> bool:
        return len(self.missing) == 0 and len(self.orphans) == 0 and self.unembedded == 0


def knowledge_version(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(KnowledgeState.version).where(KnowledgeState.id == 1)) or 0)


def diff_index(factory: sessionmaker[Session], store: VectorStore) -> IndexDiff:
    with factory() as s:
        db_ids = np.fromiter(
            s.scalars(select(Chunk.id).where(Chunk.embedding_model == store.model_id)), dtype=np.int64
        )
        unembedded = s.scalar(
            select(func.count(Chunk.id)).where((Chunk.embedding_model != store.model_id) | Chunk.embedding_model.is_(None))
        ) or 0
    idx_ids = store.ids()
    return IndexDiff(
        db_chunks=len(db_ids),
        index_vectors=len(idx_ids),
        missing=np.setdiff1d(db_ids, idx_ids),
        orphans=np.setdiff1d(idx_ids, db_ids),
        unembedded=int(unembedded),
    )


def _vectors(factory: sessionmaker[Session], ids: np.ndarray, dim: int) -> np.ndarray:
    out = np.zeros((len(ids), dim), dtype=np.float32)
    pos = {int(i): n for n, i in enumerate(ids)}
    with factory() as s:
        for start in range(0, len(ids), 1000):
            part = [int(i) for i in ids[start : start + 1000]]
            for cid, blob in s.execute(select(Chunk.id, Chunk.embedding).where(Chunk.id.in_(part))):
                out[pos[cid]] = np.frombuffer(blob, dtype=np.float32)
    return out


def sync_index(factory: sessionmaker[Session], store: VectorStore, *, save: bool = True) -> IndexDiff:
    """Make the index hold exactly the DB's vectors for its model; write it only when something changed.

    Readers (the retriever) pass save=False: they bring their in-memory copy up to date without writing.
    """
    version = knowledge_version(factory)
    diff = diff_index(factory, store)
    if len(diff.orphans):
        store.remove(diff.orphans)
    if len(diff.missing):
        store.add(diff.missing, _vectors(factory, diff.missing, store.dim))
    if not save:
        store.knowledge_version = version
    elif len(diff.orphans) or len(diff.missing) or store.knowledge_version != version or not store.exists:
        store.save(knowledge_version=version)
    return diff


def reembed(
    factory: sessionmaker[Session],
    embedder: Embedder,
    *,
    full: bool = False,
    batch_size: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Embed every chunk whose vector is not from `embedder` (all chunks with full=True), and the documents'
    views likewise. Returns the number of chunks.

    Commits batch by batch, so an interrupted reindex resumes where it stopped.
    """
    model = embedder.model_id
    with factory() as s:
        stale_views = Document.view_text.is_not(None) & (Document.view_model.is_(None) | (Document.view_model != model))
        view_todo = list(s.execute(select(Document.id, Document.view_text).where(
            Document.view_text.is_not(None) if full else stale_views).order_by(Document.id)))
    for start in range(0, len(view_todo), batch_size):
        part = view_todo[start : start + batch_size]
        vectors = embedder.embed([text for _, text in part])
        with factory() as s:
            for (doc_id, _), v in zip(part, vectors):
                s.execute(update(Document).where(Document.id == doc_id).values(
                    view_embedding=np.asarray(v, np.float32).tobytes(), view_model=model))
            bump_version(s)
            s.commit()
    stale = Chunk.embedding_model.is_(None) | (Chunk.embedding_model != model)
    with factory() as s:
        condition = Chunk.id.is_not(None) if full else stale
        todo = list(s.scalars(select(Chunk.id).where(condition).order_by(Chunk.id)))
    done = 0
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        with factory() as s:
            rows = s.execute(
                select(Chunk.id, Chunk.text, Document.title).join(Document).where(Chunk.id.in_(part))
            ).all()
            vectors = embedder.embed([chunk_context(title, text) for _, text, title in rows])
            for (cid, _, _), v in zip(rows, vectors):
                s.execute(update(Chunk).where(Chunk.id == cid).values(embedding=v.astype(np.float32).tobytes(), embedding_model=model))
            bump_version(s)
            s.commit()
        done += len(part)
        if on_progress:
            on_progress(done, len(todo))
    return done
