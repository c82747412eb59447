"""Scale part of the retrieval benchmark (imported by bench/retrieval_bench.py): FaissStore flat vs HNSW on
synthetic vectors, and BM25 on synthetic token lists shaped like the real corpus."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import psutil


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


# ------------------------------------------------------------------------------------------ corpus


def corpus_token_stats(data_dir: Path) -> dict[str, float]:
    """Tokens per chunk and vocabulary of the real corpus, for the morpheme and the bigram index."""
    import sqlite3

    from ingest.chunking import chunk_context
    from ingest.lexical import char_bigrams

    with sqlite3.connect(data_dir / "jinro.db") as conn:
        rows = conn.execute("SELECT c.terms, c.text, d.title FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
    morph = [(t or "").split() for t, _, _ in rows]
    bigr = [char_bigrams(chunk_context(title, text)) for _, text, title in rows]
    return {
        "chunks": len(rows),
        "morph_tokens_per_chunk": float(np.mean([len(m) for m in morph])),
        "morph_vocab": len({t for m in morph for t in m}),
        "bigram_tokens_per_chunk": float(np.mean([len(b) for b in bigr])),
        "bigram_vocab": len({t for b in bigr for t in b}),
    }


def synthetic_vectors(rng: np.random.Generator, centers: np.ndarray, n: int, noise: float = 0.06) -> np.ndarray:
    """Points around random cluster centres, L2-normalised (real sentence embeddings are clustered, not uniform)."""
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centers[rng.integers(0, len(centers), m)] + rng.standard_normal((m, centers.shape[1]), dtype=np.float32) * noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def time_queries(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> tuple[float, float]:
    search(queries[0])
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - t) * 1000)
    return pct(times, 50), pct(times, 95)


def dense_scale(flat_sizes: Sequence[int], hnsw_sizes: Sequence[int], n_queries: int, depth: int,
                search_threads: int, out: dict[str, Any], save: Callable[[], None]) -> dict[str, Any]:
    """Builds use every core; single queries are timed with `search_threads` OpenMP threads (and, for flat, also
    with the default count, to show what OpenMP costs a one-vector search on a busy host)."""
    import faiss

    from db.vectorstore import FLAT_LIMIT, FaissStore

    build_threads = os.cpu_count() or 1

    def timed(store, queries: np.ndarray, k: int, threads: int) -> tuple[float, float]:
        faiss.omp_set_num_threads(threads)
        try:
            return time_queries(lambda q: store.search(q, k), queries)
        finally:
            faiss.omp_set_num_threads(build_threads)

    dim = 512
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((2000, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    n_max = max([*flat_sizes, *hnsw_sizes])
    log(f"dense scale: generating {n_max:,} synthetic {dim}-d vectors")
    vectors = synthetic_vectors(rng, centers, n_max)
    queries = synthetic_vectors(np.random.default_rng(1), centers, n_queries)
    ids = np.arange(n_max, dtype=np.int64)
    faiss.omp_set_num_threads(build_threads)
    out.update({"dim": dim, "queries": n_queries, "k": depth, "flat": {}, "hnsw": {},
                           "search_threads": search_threads, "build_threads": build_threads,
                           "current_FLAT_LIMIT": FLAT_LIMIT,
                           "data": "2,000 random unit centres, points = centre + N(0, 0.06²) per dim, L2-normalised"})
    truth: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = FaissStore(Path(tmp), "synthetic", dim, kind="flat")
        have, flat_rss = 0, 0.0
        for size in sorted(set(flat_sizes) | set(hnsw_sizes)):
            gc.collect()
            before, t = rss_mb(), time.perf_counter()
            store.add(ids[have:size], vectors[have:size])
            build_s, grown = time.perf_counter() - t, rss_mb() - before
            have = size
            p50, p95 = timed(store, queries, depth, search_threads)
            p50_10, _ = timed(store, queries[:50], 10, search_threads)
            p50_omp, _ = timed(store, queries[:50], depth, build_threads)
            if size in hnsw_sizes:
                truth[size] = store.search(queries, 10)[1]
            flat_rss += grown
            out["flat"][str(size)] = {
                "p50_ms": p50, "p95_ms": p95, "p50_ms_k10": p50_10, f"p50_ms_{build_threads}_threads": p50_omp,
                "add_s": round(build_s, 2),
                "index_mb": round(size * dim * 4 / 2**20, 1),
                "rss_growth_mb": round(flat_rss, 1),
            }
            log(f"flat {size:,}: p50 {p50} ms (k={depth}), p95 {p95} ms")
            save()
        del store
        gc.collect()
        for size in sorted(hnsw_sizes):
            store = FaissStore(Path(tmp), "synthetic", dim, kind="hnsw")
            gc.collect()
            before, t = rss_mb(), time.perf_counter()
            log(f"hnsw {size:,}: building (M=32, efConstruction=80)")
            for start in range(0, size, 50_000):
                store.add(ids[start : min(size, start + 50_000)], vectors[start : min(size, start + 50_000)])
            build_s, grown = time.perf_counter() - t, rss_mb() - before
            p50, p95 = timed(store, queries, depth, search_threads)
            p50_10, _ = timed(store, queries[:50], 10, search_threads)
            found = store.search(queries, 10)[1]
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth[size])]))
            store.save()
            out["hnsw"][str(size)] = {
                "p50_ms": p50, "p95_ms": p95, "p50_ms_k10": p50_10, "build_s": round(build_s, 1),
                "rss_growth_mb": round(grown, 1), "file_mb": round(store.index_path.stat().st_size / 2**20, 1),
                "recall@10_vs_flat": round(recall, 4), "efSearch": 64,
            }
            log(f"hnsw {size:,}: p50 {p50} ms, recall@10 {recall:.3f}, build {build_s:.0f} s")
            save()
            del store
            gc.collect()
    return out


def zipf_tokens(rng: np.random.Generator, n_docs: int, per_doc: float, vocab: int, prefix: str) -> list[list[str]]:
    words = [f"{prefix}{i}" for i in range(vocab)]
    p = 1.0 / np.arange(1, vocab + 1) ** 1.05
    p /= p.sum()
    lengths = np.maximum(1, rng.poisson(per_doc, n_docs))
    flat = rng.choice(vocab, size=int(lengths.sum()), p=p)
    out, pos = [], 0
    for n in lengths:
        out.append([words[j] for j in flat[pos : pos + n]])
        pos += n
    return out


def bm25_scale(stats: dict[str, float], n_docs: int, n_queries: int, depth: int) -> dict[str, Any]:
    """Our LexicalIndex at n_docs synthetic chunks; vocabulary grown from the real one by Heaps' law."""
    from assistant.retrieval.corpus import LexicalIndex

    out: dict[str, Any] = {"chunks": n_docs, "queries": n_queries, "k": depth}
    rng = np.random.default_rng(2)
    growth = (n_docs / stats["chunks"]) ** 0.5
    for name, per_doc, vocab, q_len in (("morpheme", stats["morph_tokens_per_chunk"], stats["morph_vocab"], 8),
                                        ("bigram", stats["bigram_tokens_per_chunk"], stats["bigram_vocab"], 20)):
        vocab = int(vocab * growth)
        log(f"bm25 scale ({name}): {n_docs:,} chunks × ~{per_doc:.0f} tokens, vocabulary {vocab:,}")
        docs = zipf_tokens(rng, n_docs, per_doc, vocab, name[0])
        gc.collect()
        before, t = rss_mb(), time.perf_counter()
        index = LexicalIndex(docs)
        build_s, grown = time.perf_counter() - t, rss_mb() - before
        del docs
        # query tokens from the middle of the distribution (rank 50..5000): content words, not the commonest
        queries = [[f"{name[0]}{j}" for j in rng.integers(50, min(5000, vocab), q_len)] for _ in range(n_queries)]
        index.top(queries[0], depth)
        times = []
        for q in queries:
            t = time.perf_counter()
            index.top(q, depth)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = {"tokens_per_chunk": round(per_doc, 1), "vocab": vocab, "query_tokens": q_len,
                     "p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "build_s": round(build_s, 1),
                     "rss_growth_mb": round(grown, 1)}
        log(f"bm25 scale ({name}): p50 {out[name]['p50_ms']} ms")
        del index
        gc.collect()
    return out


# ------------------------------------------------------------------------------------------ markdown
