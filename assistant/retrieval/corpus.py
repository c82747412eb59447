"""An in-memory view of the knowledge DB for retrieval: chunk metadata, the BM25 indexes and the vector index.

Loaded once and rebuilt only when the DB's knowledge version changes (one integer, checked at most every
`check_every` seconds), beside the snapshot in use and swapped in whole, so no query rebuilds anything.
Passages flagged at ingest (`Chunk.flag`: instruction-like text, `ingest.screening`) are left out: students never
see them; reviewers do (`GET /v1/knowledge/flagged`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import faiss
import numpy as np
from scipy import sparse
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Chunk, Document
from db.vectorstore import VectorStore
from ingest.chunking import chunk_context
from ingest.indexing import knowledge_version, sync_index
from ingest.lexical import char_bigrams, morphemes_many

log = logging.getLogger("jinro.retrieval")


class LexicalIndex:
    """BM25 over token lists (morphemes or character bigrams), scoring every row.

    Lucene's BM25 (the variant bm25s scores by default: idf = ln(1 + (N - df + .5) / (df + .5)), tf / (tf + k1 (1 - b
    + b |d| / avgdl))), with every row's weights computed once into a sparse term-major matrix, so a query adds up
    the columns of its terms. Built in vectorised numpy/scipy from term ids (bm25s's per-document Python loop took
    2 s for the dictionary's 7,500 chunks, and every ingest batch meant a rebuild).
    """

    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> None:
        vocab: dict[str, int] = {}
        self._build([term_ids(vocab, d) for d in docs], vocab, k1, b)

    @classmethod
    def from_ids(cls, rows: list[np.ndarray], vocab: dict[str, int], k1: float = 1.2, b: float = 0.75) -> LexicalIndex:
        """An index over rows of term ids from `vocab` (which may go on growing: later ids are ignored here)."""
        index = cls.__new__(cls)
        index._build(rows, vocab, k1, b)
        return index

    def _build(self, rows: list[np.ndarray], vocab: dict[str, int], k1: float, b: float) -> None:
        self.size, self._vocab, self._width = len(rows), vocab, len(vocab)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.concatenate(rows) if rows else np.zeros(0, np.int32)
        where = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        tf = sparse.csr_matrix((np.ones(len(ids), np.float32), (where, ids)), shape=(len(rows), self._width))
        tf.sum_duplicates()  # one entry per (row, term): its count
        df = np.bincount(tf.indices, minlength=self._width)
        idf = np.log1p((len(rows) - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = (k1 * ((1 - b) + b * lengths / (lengths.mean() if len(rows) else 1.0))).astype(np.float32)
        tf.data = idf[tf.indices] * tf.data / (np.repeat(norm, np.diff(tf.indptr)) + tf.data)
        weights = tf.tocsc()  # column t: the rows holding term t and their weights
        self._indptr, self._rows, self._weights = weights.indptr, weights.indices, weights.data

    def top(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the k best rows with a positive score."""
        cols = [c for c in (self._vocab.get(t) for t in dict.fromkeys(tokens)) if c is not None and c < self._width]
        if not cols or not self.size:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = np.zeros(self.size, np.float32)
        for c in cols:  # a column's rows are distinct, so += adds each once
            start, end = self._indptr[c], self._indptr[c + 1]
            scores[self._rows[start:end]] += self._weights[start:end]
        k = min(k, len(scores))
        rows = np.argpartition(-scores, k - 1)[:k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        rows = rows[scores[rows] > 0]
        return rows.astype(np.int64), scores[rows].astype(np.float32)


def term_ids(vocab: dict[str, int], tokens: list[str]) -> np.ndarray:
    """`tokens` as ids of `vocab`, adding the new ones."""
    return np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens), dtype=np.int32, count=len(tokens))


class TermCache:
    """Each chunk's morpheme and bigram term ids, kept from one snapshot build to the next, so a rebuild after an
    ingest batch analyses only the new chunks (chunk ids are never reused: an edited document gets new chunks).
    One vocabulary that only grows; builds run one at a time (`Corpus`)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.morph: dict[int, np.ndarray] = {}
        self.bigram: dict[int, np.ndarray] = {}

    def keep_only(self, chunk_ids: np.ndarray) -> None:
        live = set(chunk_ids.tolist())
        for table in (self.morph, self.bigram):
            for cid in [c for c in table if c not in live]:
                del table[cid]


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
    doc_chunks: dict[int, int] = field(default_factory=dict)  # document id -> its number of chunks
    # document views embedded by the index's model (Document.view_*): row i is document view_doc_ids[i]
    view_doc_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    views: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    store: VectorStore | None = None  # the vector index built with this snapshot (Corpus._build)
    prepared: Any = None  # what Corpus's `prepare` built with it

    def __post_init__(self) -> None:
        for i, ext in enumerate(self.external_ids):
            self.first_row.setdefault(ext, i)

    @property
    def empty(self) -> bool:
        return len(self.chunk_ids) == 0


def load_snapshot(factory: sessionmaker[Session], version: int, *, bigrams: bool,
                  model_id: str | None = None, cache: TermCache | None = None) -> Snapshot:
    """`model_id`: the index's model; the document views embedded by it are loaded too. `cache`: the term ids of
    chunks seen by earlier builds (only the others are read and analysed)."""
    cache = cache if cache is not None else TermCache()
    with factory() as s:
        rows = s.execute(
            select(Chunk.id, Chunk.document_id, Chunk.text, Document.external_id, Document.title,
                   Document.as_of).join(Document).where(Chunk.flag.is_(None)).order_by(Chunk.id)
        ).all()
        new = [r.id for r in rows if r.id not in cache.morph]
        stored = {}
        for start in range(0, len(new), 1000):
            stored.update(s.execute(select(Chunk.id, Chunk.terms).where(Chunk.id.in_(new[start:start + 1000]))).all())
        view_rows = s.execute(select(Document.id, Document.view_embedding).where(
            Document.view_model == model_id, Document.view_embedding.is_not(None)).order_by(Document.id)).all() \
            if model_id else []
    unanalysed = [r for r in rows if r.id in stored and stored[r.id] is None]  # chunks from before terms were stored
    for r, terms in zip(unanalysed, morphemes_many([chunk_context(r.title, r.text) for r in unanalysed])):
        stored[r.id] = " ".join(terms)
    for r in rows:
        if r.id in stored:
            cache.morph[r.id] = term_ids(cache.vocab, stored[r.id].split())
        if bigrams and r.id not in cache.bigram:
            cache.bigram[r.id] = term_ids(cache.vocab, char_bigrams(chunk_context(r.title, r.text)))
    ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows))
    cache.keep_only(ids)
    morph = [cache.morph[r.id] for r in rows]
    doc_rows: dict[int, list[np.ndarray]] = {}
    doc_first: dict[int, int] = {}
    for i, r in enumerate(rows):
        doc_rows.setdefault(r.document_id, []).append(morph[i])
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
        morph=LexicalIndex.from_ids(morph, cache.vocab),
        bigram=LexicalIndex.from_ids([cache.bigram[r.id] for r in rows], cache.vocab) if bigrams else None,
        # b=0.3: long documents (many duties) are not penalised much; tuned on the dev set (see docs/retrieval.md)
        doc_morph=LexicalIndex.from_ids([np.concatenate(parts) for parts in doc_rows.values()], cache.vocab,
                                        k1=1.2, b=0.3),
        doc_rows=np.fromiter(doc_first.values(), dtype=np.int64, count=len(doc_first)),
        doc_first_row=doc_first,
        doc_chunks={d: len(parts) for d, parts in doc_rows.items()},
        view_doc_ids=np.fromiter((r.id for r in view_rows), dtype=np.int64, count=len(view_rows)),
        views=np.vstack([np.frombuffer(r.view_embedding, dtype=np.float32) for r in view_rows]) if view_rows
        else np.zeros((0, 0), np.float32),
    )


class Corpus:
    """Holds the current snapshot (with its own vector index); `current()` notices when ingest changed the DB.

    A new snapshot is always built beside the one in use and swapped in whole, so a query never sees half of one.
    With `background=True` (the API) the build runs on its own thread and `current()` goes on returning the old
    snapshot until the swap: a turn never waits for ingest, only the very first load is waited for. While ingest
    keeps changing the DB, builds are spaced so that they take at most about a fifth of one core (`BUILD_SHARE`).
    `prepare(version)`: more derived state built with each snapshot (the retriever's occupation-name index).
    """

    BUILD_SHARE = 0.2

    def __init__(self, factory: sessionmaker[Session], store: VectorStore, *, check_every: float = 2.0,
                 bigrams: bool = True, background: bool = False, prepare: Callable[[], object] | None = None) -> None:
        self.factory, self.store, self.check_every, self.bigrams = factory, store, check_every, bigrams
        self.background, self.prepare = background, prepare
        faiss.omp_set_num_threads(1)  # single queries: OpenMP threads only add spin-wait latency under load
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._building = False
        self._terms = TermCache()
        self._next_build = 0.0  # monotonic time before which no background build starts
        self.refreshes = 0
        self.last_build_s = 0.0

    def current(self) -> Snapshot:
        snap = self._snapshot
        if snap is not None and (self._building or time.monotonic() - self._checked < self.check_every):
            return snap
        with self._lock:
            snap = self._snapshot
            self._checked = time.monotonic()
            version = knowledge_version(self.factory)
            if snap is not None and snap.version == version:
                return snap
            if snap is None or not self.background:
                self._snapshot = self._build(version)
                return self._snapshot
            if not self._building and time.monotonic() >= self._next_build:
                self._building = True
                threading.Thread(target=self._build_beside, args=(version,), name="jinro-corpus", daemon=True).start()
            return snap

    def wait_built(self, timeout: float = 30.0) -> Snapshot:
        """The snapshot once no build is running (tests and tools that must see what was just ingested)."""
        deadline = time.monotonic() + timeout
        self._checked = 0.0
        snap = self.current()
        while (self._building or snap.version != knowledge_version(self.factory)) and time.monotonic() < deadline:
            time.sleep(0.02)
            self._checked, self._next_build = 0.0, 0.0
            snap = self.current()
        return snap

    def _build_beside(self, version: int) -> None:
        try:
            snap = self._build(version)
            with self._lock:
                self._snapshot = snap
        except Exception:  # the DB went away for a moment: keep serving the old snapshot, try again later
            log.exception("could not build a new retrieval snapshot; the old one stays in use")
        finally:
            self._next_build = time.monotonic() + self.last_build_s * (1 / self.BUILD_SHARE - 1)
            self._building = False

    def _build(self, version: int) -> Snapshot:
        """A snapshot of the DB at `version` with a vector index of its own (a shared pgvector table is shared)."""
        t0 = time.perf_counter()
        # FaissStore: read the file into a new index, then catch up in memory. PgVectorStore: always exists and load()
        # takes the DB's version (the writers keep the shared table in step), so it is never synced here.
        store = self.store.fresh()
        if store.exists:
            store.load()
        if store.knowledge_version != version:
            sync_index(self.factory, store, save=False)
        snap = load_snapshot(self.factory, version, bigrams=self.bigrams, model_id=store.model_id, cache=self._terms)
        snap.store = store
        snap.prepared = self.prepare() if self.prepare is not None else None
        self.refreshes += 1
        self.last_build_s = time.perf_counter() - t0
        return snap
