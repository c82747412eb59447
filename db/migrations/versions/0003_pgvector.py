"""pgvector: the shared vector store's table `chunk_vectors` (PostgreSQL with the `vector` extension only)

Runs its DDL only on PostgreSQL when the server offers the `vector` extension (and this role may create it);
everywhere else (SQLite, a PostgreSQL without pgvector) it is a no-op that still moves the revision to 0003.
`db.pgvector.PgVectorStore` creates the same objects itself (idempotently) if pgvector is installed later.

The column is an untyped `vector` so that chunks embedded by models of different dimensions can live side by side;
each model gets a partial HNSW index over `embedding::vector(dim)` (pgvector's recipe for mixed dimensions). This
migration creates the one for the default embedder (use-multilingual-v3, 512-d); the store adds others on first use.

The table is not part of `Base.metadata` (it exists only where pgvector does), so compare_metadata against a
pgvector database reports it as an extra table; that is expected.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

DEFAULT_MODEL, DEFAULT_DIM = "use-multilingual-v3", 512
DEFAULT_INDEX = "ix_chunk_vectors_hnsw_use_multilingual_v3_512_c338c781"  # = db.pgvector.index_name(...)


def _pgvector_available(bind) -> bool:  # noqa: ANN001
    if bind.dialect.name != "postgresql":
        return False
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).scalar():
        return True
    if not bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar():
        log.warning("pgvector is not installed on this PostgreSQL server: chunk_vectors not created "
                    "(JINRO_VECTOR_STORE=pgvector needs it; the FAISS store works without)")
        return False
    try:
        with bind.begin_nested():  # a savepoint: a refused CREATE EXTENSION must not abort the upgrade
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError as exc:
        log.warning("cannot create the pgvector extension (%s): chunk_vectors not created — "
                    "have a superuser run CREATE EXTENSION vector, then the pgvector store creates it", exc.orig)
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if not _pgvector_available(bind):
        return
    op.execute(
        "CREATE TABLE IF NOT EXISTS chunk_vectors ("
        " chunk_id bigint PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,"
        " model text NOT NULL,"
        " embedding vector NOT NULL)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS ix_chunk_vectors_model ON chunk_vectors (model, chunk_id)")
    op.execute(
        f'CREATE INDEX IF NOT EXISTS "{DEFAULT_INDEX}" ON chunk_vectors'
        f" USING hnsw ((embedding::vector({DEFAULT_DIM})) vector_ip_ops) WITH (m = 16, ef_construction = 64)"
        f" WHERE model = '{DEFAULT_MODEL}'"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS chunk_vectors")  # the extension stays: other databases may use it
