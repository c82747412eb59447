"""An in-memory view of the knowledge DB for retrieval: chunk metadata, the BM25 indexes and the vector index.

Loaded once and refreshed only when the DB's knowledge version changes (one integer, checked at most every
`check_every` seconds), so no query rebuilds anything.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import bm25s
import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Chunk, Document
from db.vectorstore import VectorStore
from ingest.chunking import chunk_context
from ingest.indexing import knowledge_version, sync_index
from ingest.lexical import char_bigrams, morphemes_many


class LexicalIndex:
    """BM25 over token lists (morphemes or character bigrams), scoring every chunk row."""

    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.size = len(docs)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._vocab: set[str] = set()
        if docs:
            self._bm25.index(docs, show_progress=False)
            self._vocab = set(self._bm25.vocab_dict)

    def top(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the k best rows with a positive score."""
        tokens = [t for t in dict.fromkeys(tokens) if t in self._vocab]
        if not tokens or not self.size:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self._bm25.get_scores(tokens)
        k = min(k, len(scores))
        rows = np.argpartition(-scores, k - 1)[:k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        rows = rows[scores[rows] > 0]
        return rows.astype(np.int64), scores[rows].astype(np.float32)


@dataclass
class Snapshot:
    version: int
    chunk_ids: np.ndarray
    row_of: dict[int, int]
    doc_ids: np.ndarray
    external_ids: list[str]
    titles: list[str]
    as_ofs: list[str | None]
    texts: list[str]
    morph: LexicalIndex
    bigram: LexicalIndex | None
    first_row: dict[str, int] = field(default_factory=dict)  # external_id -> row of its first chunk
    # document-level BM25 (all chunk terms of a document as one text; row i = document doc_rows[i])
    doc_morph: LexicalIndex | None = None
    doc_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # first chunk row of each doc
    doc_first_row: dict[int, int] = field(default_factory=dict)  # document id -> row of its first chunk
    # document views embedded by the index's model (Document.view_*): row i is document view_doc_ids[i]
    view_doc_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    views: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        for i, ext in enumerate(self.external_ids):
            self.first_row.setdefault(ext, i)

    @property
    def empty(self) -> bool:
        return len(self.chunk_ids) == 0


def load_snapshot(factory: sessionmaker[Session], version: int, *, bigrams: bool,
                  model_id: str | None = None) -> Snapshot:
    """`model_id`: the index's model; the document views embedded by it are loaded too."""
    with factory() as s:
        rows = s.execute(
            select(Chunk.id, Chunk.document_id, Chunk.text, Chunk.terms, Document.external_id, Document.title,
                   Document.as_of).join(Document).order_by(Chunk.id)
        ).all()
        view_rows = s.execute(select(Document.id, Document.view_embedding).where(
            Document.view_model == model_id, Document.view_embedding.is_not(None)).order_by(Document.id)).all() \
            if model_id else []
    missing = [i for i, r in enumerate(rows) if r.terms is None]  # chunks from before terms were stored
    computed = morphemes_many([chunk_context(rows[i].title, rows[i].text) for i in missing]) if missing else []
    terms = [r.terms.split() if r.terms else [] for r in rows]
    for i, t in zip(missing, computed):
        terms[i] = t
    ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows))
    doc_terms: dict[int, list[str]] = {}
    doc_first: dict[int, int] = {}
    for i, r in enumerate(rows):
        doc_terms.setdefault(r.document_id, []).extend(terms[i])
        doc_first.setdefault(r.document_id, i)
    return Snapshot(
        version=version,
        chunk_ids=ids,
        row_of={int(c): i for i, c in enumerate(ids)},
        doc_ids=np.fromiter((r.document_id for r in rows), dtype=np.int64, count=len(rows)),
        external_ids=[r.external_id for r in rows],
        titles=[r.title for r in rows],
        as_ofs=[r.as_of for r in rows],
        texts=[r.text for r in rows],
        morph=LexicalIndex(terms),
        bigram=LexicalIndex([char_bigrams(chunk_context(r.title, r.text)) for r in rows]) if bigrams else None,
        # b=0.3: long documents (many duties) are not penalised much; tuned on the dev set (see docs/retrieval.md)
        doc_morph=LexicalIndex(list(doc_terms.values()), k1=1.2, b=0.3),
        doc_rows=np.fromiter(doc_first.values(), dtype=np.int64, count=len(doc_first)),
        doc_first_row=doc_first,
        view_doc_ids=np.fromiter((r.id for r in view_rows), dtype=np.int64, count=len(view_rows)),
        views=np.vstack([np.frombuffer(r.view_embedding, dtype=np.float32) for r in view_rows]) if view_rows
        else np.zeros((0, 0), np.float32),
    )


class Corpus:
    """Holds the current snapshot and vector index; `current()` refreshes them when ingest changed the DB."""

    def __init__(self, factory: sessionmaker[Session], store: VectorStore, *, check_every: float = 2.0,
                 bigrams: bool = True) -> None:
        self.factory, self.store, self.check_every, self.bigrams = factory, store, check_every, bigrams
        faiss.omp_set_num_threads(1)  # single queries: OpenMP threads only add spin-wait latency under load
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self.refreshes = 0

    def current(self) -> Snapshot:
        now = time.monotonic()
        snap = self._snapshot
        if snap is not None and now - self._checked < self.check_every:
            return snap
        with self._lock:
            self._checked = time.monotonic()
            version = knowledge_version(self.factory)
            if self._snapshot is None or self._snapshot.version != version:
                self._refresh(version)
            return self._snapshot  # type: ignore[return-value]

    def _refresh(self, version: int) -> None:
        # FaissStore: re-read the file, then catch up in memory. PgVectorStore: always exists and load() takes the
        # DB's version (the writers keep the shared table in step), so it is never synced here.
        if self.store.exists:
            self.store.load()
        if self.store.knowledge_version != version:
            sync_index(self.factory, self.store, save=False)
        self._snapshot = load_snapshot(self.factory, version, bigrams=self.bigrams, model_id=self.store.model_id)
        self.refreshes += 1
