"""`PgVectorStore`: the vector store in PostgreSQL (pgvector), shared by every API replica.

The vectors live in the table `chunk_vectors(chunk_id -> chunks.id ON DELETE CASCADE, model, embedding vector)`
created by migration 0003 (or by `ensure_schema` when pgvector was installed after the migrations ran). Deleting a
chunk deletes its vector in the same transaction; `ingest.indexing.sync_index` adds the vectors of new chunks
from the DB's `chunks.embedding` bytes, exactly as for FAISS. Every write commits, so `save()` has nothing to do.

Search is by inner product over L2-normalised vectors (pgvector's `<#>` is the negated inner product) through an
HNSW index (`vector_ip_ops`, m=16, ef_construction=64) per embedding model: a partial index over
`embedding::vector(dim)` WHERE model = ..., so models of different dimensions can share the table. The query
repeats that expression and predicate so the planner can use the index; `hnsw.ef_search` is set per query
(at least k: an HNSW scan returns at most ef_search rows).

Readers need no in-memory copy and no sync: `load()` returns the store itself and takes the DB's knowledge
version as its own, so `assistant.retrieval.corpus.Corpus` never syncs it (the writers — `ingest`, the API's knowledge
routes — do, in their own command).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.exc import DBAPIError

from db.errors import VectorIndexError

TABLE = "chunk_vectors"
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64
DEFAULT_EF_SEARCH = 100
_LOCK = 7406113  # advisory lock key for schema changes (db.migrate uses 7406112)


def index_name(model_id: str, dim: int) -> str:
    """The HNSW index of one model: readable, unique (hash), within PostgreSQL's 63-byte names."""
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")[:24]
    digest = hashlib.sha1(f"{model_id}:{dim}".encode()).hexdigest()[:8]
    return f"ix_{TABLE}_hnsw_{slug}_{dim}_{digest}"


def _vector_type():
    try:
        from pgvector.sqlalchemy import Vector
    except ImportError as exc:  # pragma: no cover - pgvector is a dependency
        raise VectorIndexError("JINRO_VECTOR_STORE=pgvector needs the `pgvector` Python package: pip install pgvector") from exc
    return Vector


def _literal(model_id: str) -> str:
    return "'" + model_id.replace("'", "''") + "'"


class PgVectorStore:
    """VectorStore over `chunk_vectors` in the knowledge DB (PostgreSQL with the pgvector extension)."""

    kind = "pgvector-hnsw"

    def __init__(self, engine: Engine, model_id: str, dim: int, *, ef_search: int = DEFAULT_EF_SEARCH) -> None:
        if engine.dialect.name != "postgresql":
            raise VectorIndexError(
                f"JINRO_VECTOR_STORE=pgvector needs a PostgreSQL JINRO_DB_URL, not {engine.dialect.name} — "
                "set JINRO_VECTOR_STORE=faiss for SQLite"
            )
        if not 1 <= dim <= 2000:
            raise VectorIndexError(f"pgvector's HNSW index takes 1 to 2000 dimensions, not {dim}")
        self.engine, self.model_id, self.dim, self.ef_search = engine, model_id, dim, ef_search
        self.index_name = index_name(model_id, dim)
        self.knowledge_version: int | None = None
        self._vector = _vector_type()
        self._ready = False
        expr = f"(embedding::vector({dim}))"  # must match the index expression exactly
        self._expr = expr
        model = _literal(model_id)  # a literal, not a parameter: the partial index's predicate must be provable
        self._where = f"model = {model}"
        self._search_sql = text(
            f"SELECT chunk_id, -({expr} <#> CAST(:q AS vector({dim}))) AS score FROM {TABLE} WHERE {self._where} "
            f"ORDER BY {expr} <#> CAST(:q AS vector({dim})) LIMIT :k"
        ).bindparams(bindparam("q", type_=self._vector(dim)))

    # -- schema ------------------------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the extension, the table and this model's HNSW index when missing (idempotent, serialised)."""
        if self._ready:
            return
        try:
            with self.engine.begin() as conn:
                present = conn.execute(text(f"SELECT to_regclass('{TABLE}') IS NOT NULL")).scalar()
                indexed = conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": self.index_name}).scalar()
                if present and indexed:
                    self._ready = True
                    return
                conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
                if not conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar():
                    raise VectorIndexError(
                        "the PostgreSQL server has no pgvector extension — install it (the pgvector/pgvector images "
                        "have it) or set JINRO_VECTOR_STORE=faiss"
                    )
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                conn.execute(text(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (chunk_id bigint PRIMARY KEY REFERENCES chunks (id) "
                    "ON DELETE CASCADE, model text NOT NULL, embedding vector NOT NULL)"
                ))
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_model ON {TABLE} (model, chunk_id)"))
                conn.execute(text(self.index_ddl()))
        except DBAPIError as exc:
            raise VectorIndexError(f"cannot prepare the pgvector table {TABLE}: {exc.orig} — "
                                   "run `ingest migrate` as the database owner") from exc
        self._ready = True

    def index_ddl(self, *, if_not_exists: bool = True) -> str:
        return (
            f'CREATE INDEX {"IF NOT EXISTS " if if_not_exists else ""}"{self.index_name}" ON {TABLE} '
            f"USING hnsw ({self._expr} vector_ip_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
            f"WHERE {self._where}"
        )

    # -- the VectorStore protocol ------------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        """Always: the table is the index (rows are committed as they are written)."""
        return True

    def load(self) -> PgVectorStore:
        """Nothing to read: take the DB's current knowledge version, since the writers keep the table in step."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            self.knowledge_version = int(conn.execute(text("SELECT version FROM knowledge_state WHERE id = 1")).scalar() or 0)
        return self

    def save(self, knowledge_version: int | None = None) -> None:
        self.knowledge_version = knowledge_version

    def fresh(self) -> PgVectorStore:
        """The same store: the table is shared and always current."""
        return self

    def __len__(self) -> int:
        self.ensure_schema()
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {TABLE} WHERE {self._where}")).scalar() or 0)

    def ids(self) -> np.ndarray:
        self.ensure_schema()
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT chunk_id FROM {TABLE} WHERE {self._where} ORDER BY chunk_id")).scalars()
            return np.fromiter(rows, dtype=np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors of `ids` (binary COPY into a temp table, then one upsert). Chunks deleted
        meanwhile are skipped rather than failing on the foreign key."""
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise VectorIndexError(f"vectors have dimension {vectors.shape[-1]}, the store expects {self.dim}")
        if len(ids) != len(vectors):
            raise VectorIndexError(f"{len(ids)} ids but {len(vectors)} vectors")
        self.ensure_schema()
        ids = np.asarray(ids, dtype=np.int64)
        # the vector type's binary input: int16 dim, int16 unused, dim × float4, all big-endian
        header = np.array([self.dim, 0], dtype=">i2").tobytes()
        payload = vectors.astype(">f4")
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS _chunk_vectors_load (chunk_id bigint, embedding vector) "
                            "ON COMMIT DELETE ROWS")
                with cur.copy("COPY _chunk_vectors_load (chunk_id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", "bytea"])  # bytea: the field goes as is to the column's binary input
                    for i, v in zip(ids.tolist(), payload):
                        cp.write_row((i, header + v.tobytes()))
                cur.execute(
                    f"INSERT INTO {TABLE} (chunk_id, model, embedding) "
                    "SELECT l.chunk_id, %s, l.embedding FROM _chunk_vectors_load l JOIN chunks c ON c.id = l.chunk_id "
                    "ON CONFLICT (chunk_id) DO UPDATE SET model = EXCLUDED.model, embedding = EXCLUDED.embedding",
                    (self.model_id,),
                )

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self.ensure_schema()
        with self.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {TABLE} WHERE chunk_id = ANY(:ids) AND {self._where}"),
                         {"ids": [int(i) for i in ids]})

    def clear(self) -> None:
        """Drop this model's vectors (`ingest reindex` then re-adds them all from the DB)."""
        self.ensure_schema()
        with self.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {TABLE} WHERE {self._where}"))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids`, in that order (zeros for an id the store does not hold)."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if len(ids) == 0:
            return out
        self.ensure_schema()
        pos = {int(i): n for n, i in enumerate(ids)}
        stmt = text(f"SELECT chunk_id, embedding FROM {TABLE} WHERE chunk_id = ANY(:ids) AND {self._where}").columns(
            embedding=self._vector())
        with self.engine.connect() as conn:
            for cid, vec in conn.execute(stmt, {"ids": list(pos)}):
                out[pos[int(cid)]] = np.asarray(vec, dtype=np.float32)
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, width); width = the most hits any query got (≤ k); missing hits: id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = queries.shape[0]
        if k <= 0:
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        if queries.shape[1] != self.dim:
            raise VectorIndexError(f"queries have dimension {queries.shape[1]}, the store expects {self.dim}")
        self.ensure_schema()
        results: list[list[tuple[int, float]]] = []
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(int(self.ef_search), int(k))}"))
            for q in queries:
                results.append([(int(c), float(s)) for c, s in conn.execute(self._search_sql, {"q": q, "k": int(k)})])
        width = max((len(r) for r in results), default=0)
        scores = np.full((n, width), np.finfo(np.float32).min, dtype=np.float32)
        ids = np.full((n, width), -1, dtype=np.int64)
        for row, hits in enumerate(results):
            for col, (cid, score) in enumerate(hits):
                ids[row, col], scores[row, col] = cid, score
        return scores, ids

    # -- for `ingest status` and the benchmark -----------------------------------------------------------------
    def size_bytes(self) -> dict[str, int]:
        """On-disk size: the whole table (heap + TOAST + every index) and this model's HNSW index alone."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            total = conn.execute(text(f"SELECT pg_total_relation_size('{TABLE}')")).scalar()
            index = conn.execute(text("SELECT pg_relation_size(to_regclass(:n))"), {"n": self.index_name}).scalar()
        return {"total": int(total or 0), "index": int(index or 0)}
