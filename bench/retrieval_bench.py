"""Retrieval benchmark: jinro's HybridRetriever vs LangChain's EnsembleRetriever, and index scale.

One run, one corpus (the full bundled job dictionary), one embedder instance (USE multilingual v3):

(a) ours, per mode (dense, bm25, bigram, hybrid, hybrid+facts): Recall@1/5/10, MRR@10, nDCG@10, p50/p95 ms on
    data/eval/retrieval_dev.jsonl and retrieval_test.jsonl (query-embedding cache emptied before each mode);
(b) LangChain: EnsembleRetriever([BM25Retriever (rank_bm25, preprocess_func=ingest.lexical.morphemes),
    FAISS (langchain_community, built from the very chunk vectors in our DB, inner product)], weights [0.5, 0.5]),
    each list k chunks; its chunk ranking is cut to documents (first occurrence) like ours. Its two parts are
    reported alone too. Then the ratios: ours/theirs p50, recall@5 difference;
(c) scale: FaissStore flat vs hnsw (the project's own class and parameters) on clustered synthetic 512-d
    normalised vectors: memory, build time, p50/p95 per query, HNSW recall@10 against exact search; flat p50
    at growing sizes (to place FLAT_LIMIT); BM25 (our LexicalIndex, scipy sparse) p50 at 100k synthetic chunks whose
    token counts and vocabulary follow the real corpus' morphemes and character bigrams.

    python -m bench.retrieval_bench                       # everything; JSON to bench/out/retrieval.json
    python -m bench.retrieval_bench --skip-scale          # (a) and (b) only

The corpus is ingested first if bench/out/data holds none: JINRO_DATA_DIR=bench/out/data ingest jobs data/job_dictionary
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import psutil

from assistant.cli.evaluate import evaluate_retriever
from assistant.retrieval.hybrid import MODES, HybridRetriever
from assistant.evaluation.retrieval import Question, evaluate, load_questions
from bench.retrieval_scale import bm25_scale, corpus_token_stats, dense_scale, load_avg, log

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "data" / "eval" / "retrieval_dev.jsonl"
TEST = ROOT / "data" / "eval" / "retrieval_test.jsonl"
JOB_DICTIONARY = ROOT / "data" / "job_dictionary"


def ensure_corpus(data_dir: Path) -> None:
    db = data_dir / "jinro.db"
    if db.exists():
        import sqlite3

        with sqlite3.connect(db) as conn:
            try:
                n = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
        if n:
            return
    log(f"ingesting the job dictionary into {data_dir} (once; takes minutes)")
    env = {**os.environ, "JINRO_DATA_DIR": str(data_dir)}
    env.pop("JINRO_DB_URL", None)
    subprocess.run([sys.executable, "-c", "from ingest.cli import app; app()", "jobs", str(JOB_DICTIONARY)],
                   env=env, check=True, cwd=ROOT)


def load_chunks(factory) -> dict[str, Any]:
    from sqlalchemy import select

    from db.models import Chunk, Document
    from ingest.chunking import chunk_context

    with factory() as s:
        rows = s.execute(select(Chunk.id, Chunk.text, Chunk.embedding, Chunk.terms, Document.external_id, Document.title)
                         .join(Document).order_by(Chunk.id)).all()
    return {
        "ids": [r.id for r in rows],
        "contexts": [chunk_context(r.title, r.text) for r in rows],
        "vectors": np.vstack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows]),
        "external_ids": [r.external_id for r in rows],
        "terms": [(r.terms or "").split() for r in rows],
        "documents": len({r.external_id for r in rows}),
    }


# ------------------------------------------------------------------------------------------ LangChain side


def build_langchain(chunks: dict[str, Any], embedder, k: int) -> dict[str, Any]:
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    from langchain_core.embeddings import Embeddings

    from ingest.lexical import morphemes

    class USEEmbeddings(Embeddings):
        """LangChain Embeddings over our embedder instance (same model, same normalisation, no cache)."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed([text])[0].tolist()

    metadatas = [{"external_id": e, "chunk_id": c} for e, c in zip(chunks["external_ids"], chunks["ids"])]
    t = time.perf_counter()
    store = FAISS.from_embeddings(
        list(zip(chunks["contexts"], chunks["vectors"].tolist())), USEEmbeddings(), metadatas=metadatas,
        ids=[str(c) for c in chunks["ids"]], distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )
    faiss_s = time.perf_counter() - t
    t = time.perf_counter()
    bm25 = BM25Retriever.from_texts(chunks["contexts"], metadatas=metadatas, preprocess_func=morphemes, k=k)
    bm25_s = time.perf_counter() - t
    dense = store.as_retriever(search_kwargs={"k": k})
    ensemble = EnsembleRetriever(retrievers=[bm25, dense], weights=[0.5, 0.5], id_key="chunk_id")
    return {"ensemble": ensemble, "faiss": dense, "bm25": bm25, "build_s": {"faiss": round(faiss_s, 2), "bm25": round(bm25_s, 2)}}


def doc_ranking(docs, k: int) -> list[str]:
    return list(dict.fromkeys(d.metadata["external_id"] for d in docs))[:k]


def evaluate_langchain(lc: dict[str, Any], questions: Sequence[Question], k: int) -> dict[str, dict[str, float]]:
    names = {"langchain_ensemble": "ensemble", "langchain_faiss": "faiss", "langchain_bm25": "bm25"}
    for retriever in names.values():
        lc[retriever].invoke("워밍업 질문")  # first-call costs out of the timings

    def search(query: str, mode: str) -> list[str]:
        return doc_ranking(lc[names[mode]].invoke(query), k)

    return evaluate(search, questions, list(names))


# ------------------------------------------------------------------------------------------ (a) + (b)


def quality(data_dir: Path, k: int, search_threads: int) -> dict[str, Any]:
    import faiss

    from db.settings import Settings
    from ingest.embedding import UniversalSentenceEncoder
    from ingest.knowledge import open_knowledge

    settings = Settings(data_dir=data_dir, db_url=None)
    know = open_knowledge(settings.database_url(), settings.index_dir, settings.embedder, vector_store="faiss")
    embedder = UniversalSentenceEncoder()
    t = time.perf_counter()
    ours = HybridRetriever(know.factory, embedder, know.store())
    ours.warm()
    ours_load_s = time.perf_counter() - t
    chunks = load_chunks(know.factory)
    log(f"corpus: {chunks['documents']} documents, {len(chunks['ids'])} chunks; building the LangChain retrievers")
    lc = build_langchain(chunks, embedder, k)
    faiss.omp_set_num_threads(search_threads)  # the same for both systems (they share this process and faiss)
    out: dict[str, Any] = {
        "faiss_search_threads": search_threads,
        "corpus": {"documents": chunks["documents"], "chunks": len(chunks["ids"]), "embedder": embedder.model_id},
        "build_s": {"ours_snapshot_and_index": round(ours_load_s, 2), **{f"langchain_{n}": v for n, v in lc["build_s"].items()}},
        "k": k,
    }
    for split, path in (("dev", DEV), ("test", TEST)):
        questions, _ = load_questions(path)
        log(f"{split}: {len(questions)} questions — ours ({', '.join(MODES)})")
        load_before = load_avg()
        ours_report = evaluate_retriever(ours, questions, MODES, k=k).report
        log(f"{split}: LangChain")
        theirs = evaluate_langchain(lc, questions, k)
        ens = theirs["langchain_ensemble"]
        comparison = {}
        for mode in ("hybrid", "hybrid+facts"):
            o = ours_report[mode]
            comparison[f"{mode}_vs_ensemble"] = {
                "recall@5_diff": round(o["recall@5"] - ens["recall@5"], 4),
                "recall@10_diff": round(o["recall@10"] - ens["recall@10"], 4),
                "mrr@10_diff": round(o["mrr@10"] - ens["mrr@10"], 4),
                "p50_ratio_ours_over_theirs": round(o["p50_ms"] / ens["p50_ms"], 3),
                "p95_ratio_ours_over_theirs": round(o["p95_ms"] / ens["p95_ms"], 3),
            }
        comparison["dense_vs_langchain_faiss_p50_ratio"] = round(ours_report["dense"]["p50_ms"] / theirs["langchain_faiss"]["p50_ms"], 3)
        comparison["bm25_vs_langchain_bm25_p50_ratio"] = round(ours_report["bm25"]["p50_ms"] / theirs["langchain_bm25"]["p50_ms"], 3)
        out[split] = {"questions": len(questions), "ours": ours_report, "langchain": theirs, "comparison": comparison,
                      "load_avg_before": load_before, "load_avg_after": load_avg()}
        if split == "dev":
            out["dev"]["ours_on_hnsw"] = ours_on_hnsw(know, embedder, questions, k)
    know.engine.dispose()
    return out


def ours_on_hnsw(know, embedder, questions: Sequence[Question], k: int) -> dict[str, Any]:
    """The same retriever over an HNSW index of the same vectors: what switching index type costs in quality."""
    from db.vectorstore import FaissStore

    with tempfile.TemporaryDirectory() as tmp:
        store = FaissStore(Path(tmp), embedder.model_id, embedder.dim, kind="hnsw")
        retriever = HybridRetriever(know.factory, embedder, store)
        t = time.perf_counter()
        retriever.warm()  # no index file there: the corpus syncs the HNSW index from the DB's vectors
        build_s = time.perf_counter() - t
        report = evaluate_retriever(retriever, questions, ("dense", "hybrid", "hybrid+facts"), k=k).report
    return {"build_s": round(build_s, 1), **report}


# ------------------------------------------------------------------------------------------ (c) scale


def markdown(result: dict[str, Any]) -> str:
    """The README tables from a result JSON."""
    lines: list[str] = []
    q = result.get("quality")
    if q:
        cols = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms")
        for split in ("dev", "test"):
            r = q[split]
            lines += [f"**{split}** ({r['questions']} questions, k={q['k']}, load average {r['load_avg_before'][0]} → "
                      f"{r['load_avg_after'][0]} on {result['machine']['cpus']} CPUs)", "",
                      "| system / mode | " + " | ".join(c.replace("_ms", " ms") for c in cols) + " |",
                      "|---|" + "---:|" * len(cols)]
            rows = [(f"ours {m}", v) for m, v in r["ours"].items()] + [(m.replace("_", " "), v) for m, v in r["langchain"].items()]
            if "ours_on_hnsw" in r:
                rows += [(f"ours {m} (HNSW index)", v) for m, v in r["ours_on_hnsw"].items() if isinstance(v, dict)]
            for name, v in rows:
                lines.append(f"| {name} | " + " | ".join(f"{v[c]:.1f}" if c.endswith("_ms") else f"{v[c]:.3f}" for c in cols) + " |")
            c = r["comparison"]
            lines += ["", "| ours vs LangChain ensemble | recall@5 diff | recall@10 diff | MRR@10 diff | p50 ratio (ours/theirs) | p95 ratio |",
                      "|---|---:|---:|---:|---:|---:|"]
            for mode in ("hybrid", "hybrid+facts"):
                x = c[f"{mode}_vs_ensemble"]
                lines.append(f"| {mode} | {x['recall@5_diff']:+.3f} | {x['recall@10_diff']:+.3f} | {x['mrr@10_diff']:+.3f} | "
                             f"{x['p50_ratio_ours_over_theirs']:.2f} | {x['p95_ratio_ours_over_theirs']:.2f} |")
            lines += ["", f"Single lists, p50 ratio ours/theirs: dense vs LangChain FAISS "
                      f"{c['dense_vs_langchain_faiss_p50_ratio']:.2f}, bm25 (ours) vs BM25Retriever (rank_bm25) "
                      f"{c['bm25_vs_langchain_bm25_p50_ratio']:.2f}.", ""]
    sc = result.get("scale")
    if sc and "dense" in sc:
        d = sc["dense"]
        lines += [f"Dense (FaissStore, {d['dim']}-d, k={d['k']} per query as the retriever asks, {d['queries']} single queries, "
                  f"{d['search_threads']} search thread(s)):", "",
                  "| vectors | index | p50 ms | p95 ms | p50 ms k=10 | p50 ms, default threads | memory MB (RSS growth) | build s | recall@10 vs exact |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for size, v in d["flat"].items():
            omp = next((val for key, val in v.items() if key.endswith("_threads")), None)
            lines.append(f"| {int(size):,} | flat | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['p50_ms_k10']:.2f} | "
                         f"{omp:.2f} | {v['rss_growth_mb']:.0f} | {v['add_s']:.1f} | 1.000 |")
        for size, v in d["hnsw"].items():
            lines.append(f"| {int(size):,} | hnsw | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['p50_ms_k10']:.2f} | - | "
                         f"{v['rss_growth_mb']:.0f} | {v['build_s']:.0f} | {v['recall@10_vs_flat']:.3f} |")
        lines.append("")
    if sc and "bm25" in sc:
        b = sc["bm25"]
        lines += [f"BM25 (our LexicalIndex) at {b['chunks']:,} synthetic chunks, k={b['k']}:", "",
                  "| index | tokens/chunk | vocabulary | query tokens | p50 ms | p95 ms | build s | memory MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ("morpheme", "bigram"):
            v = b[name]
            lines.append(f"| {name} | {v['tokens_per_chunk']:.0f} | {v['vocab']:,} | {v['query_tokens']} | {v['p50_ms']:.2f} | "
                         f"{v['p95_ms']:.2f} | {v['build_s']:.0f} | {v['rss_growth_mb']:.0f} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "bench" / "out" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "retrieval.json")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--flat-sizes", default="10000,50000,100000,200000,500000,1000000")
    ap.add_argument("--hnsw-sizes", default="100000,1000000")
    ap.add_argument("--bm25-size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--search-threads", type=int, default=1,
                    help="OpenMP threads faiss may use per single-query search (both systems; see README)")
    ap.add_argument("--markdown", action="store_true", help="only print the README tables of an existing --out JSON")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return

    import faiss
    import scipy
    import langchain_classic
    import langchain_community
    import langchain_core

    result: dict[str, Any] = {
        "command": " ".join(["python", "-m", "bench.retrieval_bench", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "faiss": faiss.__version__, "scipy": scipy.__version__,
                    "faiss_omp_threads": faiss.omp_get_max_threads(),
                    "langchain_core": langchain_core.__version__, "langchain_community": langchain_community.__version__,
                    "langchain_classic": getattr(langchain_classic, "__version__", "?"),
                    "load_avg_start": load_avg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2))

    ensure_corpus(args.data_dir)
    if not args.skip_quality:
        result["quality"] = quality(args.data_dir, args.k, args.search_threads)
        save()
    if not args.skip_scale:
        stats = corpus_token_stats(args.data_dir)
        result["scale"] = {"corpus_token_stats": stats}
        result["scale"]["bm25"] = bm25_scale(stats, args.bm25_size, args.queries, 200)
        save()
        result["scale"]["dense"] = {}
        dense_scale([int(s) for s in args.flat_sizes.split(",")], [int(s) for s in args.hnsw_sizes.split(",")],
                    args.queries, 200, args.search_threads, result["scale"]["dense"], save)
    result["machine"]["load_avg_end"] = load_avg()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    log(f"wrote {args.out}")
    print(json.dumps({"quality": {s: {m: {k: v for k, v in r.items() if k in ("recall@5", "p50_ms")}
                                      for m, r in {**result["quality"][s]["ours"], **result["quality"][s]["langchain"]}.items()}
                                  for s in ("dev", "test")} if "quality" in result else None}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
