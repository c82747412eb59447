"""Embedders for tests: the real model memoised on disk (`DiskCachedEmbedder`), and `HashEmbedder`, a fake
implementation of our `Embedder` interface with another model id."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ingest.embedding import Embedder


class HashEmbedder(Embedder):
    """A tiny deterministic implementation of our `Embedder` interface with another model id (not a real model):
    character trigrams hashed into 64 signed buckets, L2-normalised. For the model-mismatch and reindex tests."""

    model_id = "test-hash-trigram-64"
    dim = 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text} "
            for i in range(len(padded) - 2):
                h = int.from_bytes(hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest(), "big")
                out[row, h % self.dim] += 1.0 if h & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


class DiskCachedEmbedder(Embedder):
    """The real embedder, memoised on disk by (model, text): vectors identical to the model's, computed once."""

    def __init__(self, inner: Embedder, directory: Path) -> None:
        self.inner, self.model_id = inner, inner.model_id
        self.dim, self.low_similarity = inner.dim, inner.low_similarity
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "vectors.sqlite", check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, vec BLOB)")
        self._lock = threading.Lock()

    def _key(self, text: str, kind: str) -> str:
        return hashlib.sha256(f"{self.model_id}\n{kind}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._memoised(texts, "passage", self.inner.embed)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._memoised(texts, "query", self.inner.embed_query)

    def _memoised(self, texts: Sequence[str], kind: str, compute: Any) -> np.ndarray:
        keys = [self._key(t, kind) for t in texts]
        with self._lock:
            found: dict[str, bytes] = {}
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                q = f"SELECT k, vec FROM v WHERE k IN ({','.join('?' * len(part))})"
                found.update(dict(self._db.execute(q, part).fetchall()))
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            vectors = compute([texts[i] for i in missing])
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)",
                                     [(keys[i], np.asarray(v, np.float32).tobytes()) for i, v in zip(missing, vectors)])
                self._db.commit()
            for i, v in zip(missing, vectors):
                found[keys[i]] = np.asarray(v, np.float32).tobytes()
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.vstack([np.frombuffer(found[k], np.float32) for k in keys])


_disk_embedders: dict[str, DiskCachedEmbedder] = {}


def disk_embedder(inner: Embedder, directory: Path) -> DiskCachedEmbedder:
    """One disk-cached embedder per test session (per cache directory)."""
    key = str(directory)
    if key not in _disk_embedders:
        _disk_embedders[key] = DiskCachedEmbedder(inner, directory)
    return _disk_embedders[key]


def vectors_dir(request: Any, tmp_path_factory: Any) -> Path:
    """pytest's cache dir (kept between runs) or, with the cache plugin off, the session's temp dir."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("jinro-api-vectors"))
    return tmp_path_factory.getbasetemp() / "jinro-api-vectors"


class CountingEmbedder(Embedder):
    """Our `Embedder` interface around a real one, counting the query texts that reach the model (what a
    retriever's cache missed)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id, self.dim, self.low_similarity = inner.model_id, inner.dim, inner.low_similarity
        self.queries: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return self.inner.embed_query(texts)
