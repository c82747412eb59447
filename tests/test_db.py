"""The knowledge DB on real SQLite and PostgreSQL: migrations, pragmas, cascades, the knowledge_state row."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.base import Base
from db.engine import create_db_engine, is_sqlite, session_factory
from db.errors import DatabaseUnavailable
from db.migrate import alembic_config, current_revision, upgrade
from db.models import (
    Chunk,
    Document,
    KnowledgeState,
    Occupation,
    OccupationAlias,
    OccupationCertificate,
    OccupationRelation,
)
from ingest.pipeline import bump_version

KNOWLEDGE_TABLES = {
    "documents", "chunks", "occupations", "occupation_certificates", "occupation_aliases", "occupation_relations",
    "ingest_runs", "knowledge_state", "alembic_version",
}


@pytest.fixture
def engine(db_url: str):
    eng = create_db_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def head_revision(engine) -> str:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def test_migrations_reach_head_and_are_idempotent(db_url: str) -> None:
    eng = create_db_engine(db_url)
    try:
        assert current_revision(eng) is None
        upgrade(eng)
        assert current_revision(eng) == head_revision(eng)
        assert KNOWLEDGE_TABLES <= set(inspect(eng).get_table_names())
        upgrade(eng)  # already at head: a no-op, no error
        eng2 = create_db_engine(db_url)  # and from a second engine (another process would do the same)
        upgrade(eng2)
        eng2.dispose()
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert conn.execute(select(func.count()).select_from(KnowledgeState)).scalar() == 1
    finally:
        eng.dispose()


def test_migrated_schema_matches_the_models(engine) -> None:
    """A model column added without a migration (or the reverse) shows up here."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_concurrent_upgrades_on_a_fresh_database(db_url: str, tmp_path: Path) -> None:
    """Several processes starting at once on an empty DB (API + CLI) must all end at head, without errors."""
    go = tmp_path / "go"
    code = (
        "import sys, time, pathlib\n"
        "from db.engine import create_db_engine\n"
        "from db.migrate import upgrade\n"
        "pathlib.Path(sys.argv[3]).touch()\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "while not go.exists(): time.sleep(0.002)\n"  # all processes have imported everything: start together
        "upgrade(create_db_engine(sys.argv[1]))\n"
    )
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, str(go), str(r)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.touch()
    outputs = [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    for rc, output in outputs:
        assert rc == 0, output
    eng = create_db_engine(db_url)
    try:
        assert current_revision(eng) == head_revision(eng)
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM knowledge_state")).scalar() == 1
    finally:
        eng.dispose()


def test_sqlite_is_in_wal_mode_with_foreign_keys_on(tmp_path: Path) -> None:
    eng = create_db_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        upgrade(eng)
        for _ in range(2):  # every pooled connection, not only the first
            with eng.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert is_sqlite(eng)
    finally:
        eng.dispose()
    assert (tmp_path / "k.db").exists()


def _document(session, ext: str = "doc:1", n_chunks: int = 2) -> Document:
    doc = Document(external_id=ext, kind="doc", title="제목", source_path="x.md", content_hash="h" * 64)
    doc.chunks = [Chunk(position=i, text=f"문장 {i}", content_hash=f"{i}" * 64) for i in range(n_chunks)]
    session.add(doc)
    session.commit()
    return doc


def test_deleting_a_document_cascades_to_its_chunks(engine) -> None:
    factory = session_factory(engine)
    with factory() as s:
        doc = _document(s, "doc:1", 3)
        keep = _document(s, "doc:2", 2)
        occ = Occupation(code="K1", document_id=doc.id, name="직업", content_hash="c" * 64)
        s.add(occ)
        s.commit()
        # a plain SQL DELETE: the database itself (ON DELETE CASCADE / SET NULL) must clean up
        s.execute(delete(Document).where(Document.id == doc.id))
        s.commit()
        assert s.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == doc.id)) == 0
        assert s.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == keep.id)) == 2
        assert s.scalar(select(Occupation.document_id).where(Occupation.code == "K1")) is None
    with factory() as s:  # the ORM way too
        s.delete(s.get(Document, keep.id))
        s.commit()
        assert s.scalar(select(func.count()).select_from(Chunk)) == 0


def test_deleting_an_occupation_cascades_to_its_facts(engine) -> None:
    factory = session_factory(engine)
    with factory() as s:
        a = Occupation(code="K1", name="가", content_hash="a" * 64)
        b = Occupation(code="K2", name="나", content_hash="b" * 64)
        s.add_all([a, b])
        s.flush()
        s.add_all([
            OccupationCertificate(occupation_id=a.id, position=0, name="사회복지사(1급, 2급)"),
            OccupationAlias(occupation_id=a.id, alias="가", compact="가", kind="name"),
            OccupationRelation(occupation_id=a.id, position=0, related_name="나", related_id=b.id),
            OccupationRelation(occupation_id=b.id, position=0, related_name="가", related_id=a.id),
        ])
        s.commit()
        s.execute(delete(Occupation).where(Occupation.id == a.id))
        s.commit()
        for table in (OccupationCertificate, OccupationAlias):
            assert s.scalar(select(func.count()).select_from(table)) == 0
        rel = s.execute(select(OccupationRelation.occupation_id, OccupationRelation.related_id)).all()
        assert rel == [(b.id, None)]  # b's link to the deleted a is set to NULL


def test_foreign_keys_are_enforced(engine) -> None:
    with session_factory(engine)() as s:
        s.add(Chunk(document_id=987654, position=0, text="고아", content_hash="0" * 64))
        with pytest.raises(IntegrityError):
            s.commit()


def test_chunk_ids_are_never_reused(engine) -> None:
    """Chunk ids are vector ids: a deleted chunk's id must not come back for a new chunk."""
    factory = session_factory(engine)
    with factory() as s:
        doc = _document(s, "doc:1", 3)
        top = max(c.id for c in doc.chunks)
        s.execute(delete(Chunk).where(Chunk.id == top))
        s.commit()
        s.add(Chunk(document_id=doc.id, position=9, text="새 문장", content_hash="9" * 64))
        s.commit()
        assert s.scalar(select(func.max(Chunk.id))) > top


def test_knowledge_state_row_exists_and_counts_up(engine) -> None:
    factory = session_factory(engine)
    with factory() as s:
        rows = s.execute(select(KnowledgeState.id, KnowledgeState.version)).all()
        assert rows == [(1, 0)]
        bump_version(s)
        bump_version(s)
        s.commit()
    with factory() as s:
        assert s.scalar(select(KnowledgeState.version).where(KnowledgeState.id == 1)) == 2


def test_unreachable_database_gives_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        create_db_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    assert "JINRO_DB_URL" in str(info.value)
