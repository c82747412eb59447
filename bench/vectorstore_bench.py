"""The two vector stores side by side at 100k chunks: FaissStore (flat and HNSW, in process) and PgVectorStore
(PostgreSQL + pgvector, HNSW m=16 ef_construction=64), with synthetic 512-d L2-normalised vectors inserted directly.

    python -m bench.vectorstore_bench                      # 100k; pgvector on a pgserver (PostgreSQL 18) in a temp dir
    python -m bench.vectorstore_bench --faiss-1m           # also FAISS flat at 1M
    python -m bench.vectorstore_bench --db postgresql://jinro:...@host/jinro_bench   # an existing PostgreSQL + pgvector

Per store: build time, search latency p50/p95 of top-10 for one query per call (as the retriever calls it;
for pgvector that includes the round trip, SQLAlchemy and `SET LOCAL hnsw.ef_search`), recall@10 against exact
search, and memory: the process RSS growth for FAISS, the table + index size (pg_total_relation_size) for pgvector.
Writes bench/out/vectorstores.json and prints a markdown table.

The vectors are a mixture of 1,000 Gaussian clusters (so neighbours are meaningful, as with real embeddings); each
query is a stored vector plus noise. Random data is harder for HNSW than real embeddings, so recall here is a
lower bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

from db.pgvector import PgVectorStore
from db.vectorstore import FaissStore
from tests.support.postgres import PgServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "vectorstores.json"
DIM, K, MODEL = 512, 10, "use-multilingual-v3"


def rss() -> int:
    return psutil.Process().memory_info().rss


def synthetic(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, DIM), dtype=np.float32)
    data = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in parts: 1M vectors are 2 GB
        m = min(100_000, n - start)
        part = centers[rng.integers(0, len(centers), m)] + rng.standard_normal((m, DIM), dtype=np.float32)
        data[start:start + m] = part / np.linalg.norm(part, axis=1, keepdims=True)
    queries = data[rng.integers(0, n, n_queries)] + 0.5 * rng.standard_normal((n_queries, DIM), dtype=np.float32) / np.sqrt(DIM)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return data, queries.astype(np.float32)


def exact_top(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Ground truth ids (= row numbers + 1, the ids the stores get)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start:start + 64] @ data.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
        out[start:start + 64] = np.take_along_axis(top, order, 1) + 1
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def latency(store, queries: np.ndarray, warmup: int = 30) -> tuple[dict, np.ndarray]:
    for q in queries[:warmup]:
        store.search(q[None, :], K)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = store.search(q[None, :], K)
        times.append((time.perf_counter() - t) * 1000)
        found.append(np.pad(ids[0], (0, K - ids.shape[1]), constant_values=-1))
    t = np.asarray(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3),
            "mean_ms": round(float(t.mean()), 3), "queries": len(t)}, np.vstack(found)


def bench_faiss(kind: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, tmp: Path) -> dict:
    """Run in a fresh process (spawn), so that its RSS growth is the index alone."""
    stem = tmp / f"faiss-{kind}-{len(data)}"
    np.save(f"{stem}-data.npy", data)
    np.save(f"{stem}-queries.npy", queries)
    np.save(f"{stem}-truth.npy", truth)
    del data
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_faiss_child, (kind, str(stem)))


def _faiss_child(kind: str, stem: str) -> dict:
    data, queries, truth = (np.load(f"{stem}-{part}.npy") for part in ("data", "queries", "truth"))
    for part in ("data", "queries", "truth"):
        os.unlink(f"{stem}-{part}.npy")
    gc.collect()
    before = rss()
    store = FaissStore(Path(stem), MODEL, DIM, kind=kind)
    t = time.perf_counter()
    store.add(np.arange(1, len(data) + 1, dtype=np.int64), data)
    build = time.perf_counter() - t
    grown = rss() - before
    lat, found = latency(store, queries)
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one thread per query: no OpenMP spinning against other processes' threads
    lat1, _ = latency(store, queries)
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    store.save()
    save = time.perf_counter() - t
    result = {
        "store": f"faiss-{kind}", "n": len(data), "build_s": round(build, 2), "save_s": round(save, 2),
        **lat, "recall_at_10": round(recall(found, truth), 4), "omp_threads": threads,
        "one_thread": {k: lat1[k] for k in ("p50_ms", "p95_ms", "mean_ms")},
        "rss_growth_mb": round(grown / 2**20, 1), "rss_total_mb": round(rss() / 2**20, 1),
        "index_file_mb": round(store.index_path.stat().st_size / 2**20, 1),
    }
    if kind == "hnsw":
        result["params"] = {"M": 32, "efConstruction": 80, "efSearch": 64}
    del store
    gc.collect()
    return result


def _pg_engine(url: str | None):
    """(engine, server or None): the given PostgreSQL, or a pgserver one (PostgreSQL 18 + pgvector) in a temp dir."""
    from db.engine import create_db_engine

    server = None
    if url is None:
        server = PgServer("jinro-vectorstore-bench-")
        url = server.new_database("jinro_bench_")
    return create_db_engine(url), server


def bench_pgvector(url: str | None, data: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                   ef_searches: tuple[int, ...]) -> dict:
    from sqlalchemy import text

    from db.migrate import upgrade

    engine, server = _pg_engine(url)
    try:
        upgrade(engine)
        store = PgVectorStore(engine, MODEL, DIM).load()
        n = len(data)
        with engine.begin() as conn:  # the chunks the vectors belong to (foreign key): one document, n empty chunks
            conn.execute(text("TRUNCATE chunk_vectors"))
            doc = conn.execute(text(
                "INSERT INTO documents (external_id, kind, title, source_path, content_hash, metadata, created_at, "
                "updated_at) VALUES (:e, 'doc', 'bench', 'bench', '', '{}', now(), now()) RETURNING id"),
                {"e": f"bench:{uuid.uuid4().hex}"}).scalar()
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                base = cur.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]
                with cur.copy("COPY chunks (id, document_id, position, text, content_hash) FROM STDIN") as cp:
                    for i in range(n):
                        cp.write_row((base + i + 1, doc, i, "", ""))
                cur.execute("SELECT setval(pg_get_serial_sequence('chunks', 'id'), %s)", (base + n,))
        truth = truth + base
        with engine.begin() as conn:
            conn.execute(text(f'DROP INDEX IF EXISTS "{store.index_name}"'))  # bulk load first, then build
        t = time.perf_counter()
        store.add(np.arange(base + 1, base + n + 1, dtype=np.int64), data)
        load = time.perf_counter() - t
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
            t = time.perf_counter()
            conn.execute(text(store.index_ddl(if_not_exists=False)))
            build = time.perf_counter() - t
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE chunk_vectors"))
        with engine.connect() as conn:
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + store._search_sql.text),
                                                        {"q": "[" + ",".join(map(str, queries[0])) + "]", "k": K}))
            version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
            server_version = conn.execute(text("SHOW server_version")).scalar()
            shared_buffers = conn.execute(text("SHOW shared_buffers")).scalar()
        sweep = []
        for ef in ef_searches:
            store.ef_search = ef
            lat, found = latency(store, queries)
            sweep.append({"ef_search": ef, **lat, "recall_at_10": round(recall(found, truth), 4)})
        store.ef_search = 100
        sizes = store.size_bytes()
        # incremental inserts into the built index (what an ingest does): 2,000 more vectors
        extra = 2000
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                with cur.copy("COPY chunks (id, document_id, position, text, content_hash) FROM STDIN") as cp:
                    for i in range(extra):
                        cp.write_row((base + n + i + 1, doc, n + i, "", ""))
        t = time.perf_counter()
        store.add(np.arange(base + n + 1, base + n + extra + 1, dtype=np.int64), data[:extra])
        incremental = time.perf_counter() - t
        default = next(s for s in sweep if s["ef_search"] == 100) if 100 in ef_searches else sweep[0]
        return {
            "store": "pgvector-hnsw", "n": n, "load_copy_s": round(load, 2), "index_build_s": round(build, 2),
            "build_s": round(load + build, 2),
            **{k: default[k] for k in ("p50_ms", "p95_ms", "mean_ms", "queries", "recall_at_10")},
            "ef_search_sweep": sweep,
            "table_total_mb": round(sizes["total"] / 2**20, 1), "hnsw_index_mb": round(sizes["index"] / 2**20, 1),
            "incremental_insert_per_s": round(extra / incremental, 1),
            "uses_hnsw_index": store.index_name in plan,
            "params": {"m": 16, "ef_construction": 64, "maintenance_work_mem": "2GB"},
            "server": {"postgresql": server_version, "pgvector": version, "shared_buffers": shared_buffers,
                       "where": "pgserver (local, unix socket)" if server else "given --db"},
        }
    finally:
        engine.dispose()
        if server is not None:
            server.stop()


def table(results: list[dict]) -> str:
    rows = ["| store | chunks | build s | p50 ms | p95 ms | p50 / p95 ms, 1 thread | recall@10 | memory |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        if r["store"].startswith("faiss"):
            mem = f"RSS +{r['rss_growth_mb']:.0f} MB (file {r['index_file_mb']:.0f} MB)"
        else:
            mem = f"table+index {r['table_total_mb']:.0f} MB (HNSW {r['hnsw_index_mb']:.0f} MB)"
        one = f"{r['one_thread']['p50_ms']} / {r['one_thread']['p95_ms']}" if "one_thread" in r else "-"
        rows.append(f"| {r['store']} | {r['n']:,} | {r['build_s']} | {r['p50_ms']} | {r['p95_ms']} | {one} | "
                    f"{r['recall_at_10']} | {mem} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="chunks (default 100k)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--faiss-1m", action="store_true", help="also FAISS flat at 1M chunks (2 GB of vectors)")
    ap.add_argument("--no-faiss-hnsw", action="store_true", help="skip FAISS HNSW (its build is the slowest step)")
    ap.add_argument("--db", help="PostgreSQL URL with pgvector (default: a pgserver in a temp dir)")
    ap.add_argument("--ef-search", default="40,100,200", help="hnsw.ef_search values to sweep (100 is the store's default)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="jinro-vbench-"))
    results: list[dict] = []
    try:
        data, queries = synthetic(args.n, args.queries)
        truth = exact_top(data, queries)
        results.append(bench_faiss("flat", data, queries, truth, tmp))
        print(table(results[-1:]), flush=True)
        if not args.no_faiss_hnsw:
            results.append(bench_faiss("hnsw", data, queries, truth, tmp))
            print(table(results[-1:]), flush=True)
        results.append(bench_pgvector(args.db, data, queries, truth,
                                      tuple(int(x) for x in args.ef_search.split(","))))
        print(table(results[-1:]), flush=True)
        if args.faiss_1m:
            del data
            gc.collect()
            big, bq = synthetic(1_000_000, args.queries, seed=1)
            results.append(bench_faiss("flat", big, bq, exact_top(big, bq), tmp))
            print(table(results[-1:]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
            "dim": DIM, "k": K, "queries": args.queries, "data": "1,000-cluster Gaussian mixture, L2-normalised",
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**meta, "results": results}, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
