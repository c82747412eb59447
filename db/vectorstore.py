"""Vector stores keyed by chunk id.

`FaissStore` is the embedded default: one FAISS index file per embedding model under the data dir, with a JSON
sidecar naming the model, dimension and index type. It is a cache of the vectors kept in the DB (chunks carry
their embedding), written atomically (temp file, fsync, rename), so it can always be rebuilt from the DB.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from db.errors import VectorIndexError

FLAT_LIMIT = 100_000  # above this many vectors use `ingest reindex --index-kind hnsw` (or pgvector): see bench/README.md


class VectorStore(Protocol):
    """What sync_index, the retriever and the CLIs use. Implementations: `FaissStore` (a file per process) and
    `db.pgvector.PgVectorStore` (a table shared by every process: `exists` is always true, `load()` returns it
    and `save()` has nothing to write). `fresh()` is a store for the same model and place with nothing loaded, to
    build a new index beside one that is being searched (the shared table returns itself)."""

    model_id: str
    dim: int
    kind: str
    knowledge_version: int | None

    @property
    def exists(self) -> bool: ...
    def load(self) -> VectorStore: ...
    def fresh(self) -> VectorStore: ...
    def __len__(self) -> int: ...
    def ids(self) -> np.ndarray: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def vectors(self, ids: np.ndarray) -> np.ndarray: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def clear(self) -> None: ...
    def save(self, knowledge_version: int | None = None) -> None: ...


@dataclass(frozen=True)
class IndexMeta:
    model_id: str
    dim: int
    kind: str  # "flat" | "hnsw"
    count: int
    knowledge_version: int | None = None


def index_paths(index_dir: Path, model_id: str) -> tuple[Path, Path]:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id).strip("_")
    return index_dir / f"{slug}.faiss", index_dir / f"{slug}.json"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class FaissStore:
    """Inner-product FAISS index over L2-normalised vectors, ids = chunk ids.

    kind="flat" is exact search (right up to ~200k chunks); kind="hnsw" is approximate and faster above that.
    """

    def __init__(self, index_dir: Path, model_id: str, dim: int, kind: str = "flat") -> None:
        if kind not in ("flat", "hnsw"):
            raise VectorIndexError(f"unknown index kind {kind!r}: use 'flat' or 'hnsw'")
        self.model_id, self.dim, self.kind = model_id, dim, kind
        self.index_path, self.meta_path = index_paths(index_dir, model_id)
        self.knowledge_version: int | None = None
        self._index = self._empty()

    def _empty(self) -> faiss.Index:
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = 64
            inner.hnsw.efConstruction = 80
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    @property
    def exists(self) -> bool:
        return self.index_path.exists() and self.meta_path.exists()

    def fresh(self) -> FaissStore:
        return FaissStore(self.index_path.parent, self.model_id, self.dim, self.kind)

    def load(self) -> FaissStore:
        """Read the index from disk; a missing index stays empty (the caller syncs it from the DB)."""
        if not self.exists:
            return self
        try:
            meta = IndexMeta(**json.loads(self.meta_path.read_text()))
            index = faiss.read_index(str(self.index_path))
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise VectorIndexError(
                f"cannot read vector index {self.index_path}: {exc} — run `ingest reindex` to rebuild it"
            ) from exc
        if meta.model_id != self.model_id or meta.dim != self.dim or index.d != self.dim:
            raise VectorIndexError(
                f"vector index {self.index_path} was built for {meta.model_id} ({meta.dim}-d), "
                f"not {self.model_id} ({self.dim}-d) — run `ingest reindex`"
            )
        self.kind, self._index, self.knowledge_version = meta.kind, index, meta.knowledge_version
        return self

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        if self._index.ntotal == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise VectorIndexError(f"vectors have dimension {vectors.shape[1]}, index expects {self.dim}")
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.kind == "hnsw":  # HNSW cannot delete: rebuild without those ids
            keep = np.setdiff1d(self.ids(), ids)
            vectors = self.vectors(keep)
            self._index = self._empty()
            self.add(keep, vectors)
            return
        self._index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return np.vstack([self._index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k); missing hits have id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self._index.ntotal == 0 or k <= 0:
            n = queries.shape[0]
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        return self._index.search(queries, min(k, int(self._index.ntotal)))

    def clear(self) -> None:
        self._index = self._empty()

    def save(self, knowledge_version: int | None = None) -> None:
        self.knowledge_version = knowledge_version
        cutoff = time.time() - 600  # temp files older than 10 minutes were left by a killed writer
        for stale in self.index_path.parent.glob(f"{self.index_path.name}*.tmp"):
            if stale.stat().st_mtime < cutoff:
                stale.unlink(missing_ok=True)
        _atomic_write(self.index_path, lambda tmp: faiss.write_index(self._index, tmp))
        meta = IndexMeta(self.model_id, self.dim, self.kind, len(self), knowledge_version)
        _atomic_write(self.meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta.__dict__)))
