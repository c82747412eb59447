"""The one timestamp column type (db/base.py `UtcDateTime`): aware UTC in and out on SQLite and PostgreSQL, and the
models still match the migrations (autogenerate sees no change)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, select

import db.conversation
import db.models  # noqa: F401
from db.base import Base
from db.conversation import ApiKey
from db.engine import create_db_engine, is_sqlite, session_factory
from db.migrate import upgrade

KST = timezone(timedelta(hours=9))


def test_timestamps_come_back_as_aware_utc(db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine)
    if not is_sqlite(engine):  # PostgreSQL answers in the session's zone: make it not UTC

        @event.listens_for(engine, "connect")
        def _seoul(dbapi_conn, _record) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'Asia/Seoul'")

        engine.dispose()
    factory = session_factory(engine)
    with factory() as s:
        aware = ApiKey(name="a", role="client", prefix="a", key_hash="a", created_at=datetime(2024, 1, 1, 9, tzinfo=KST))
        naive = ApiKey(name="n", role="client", prefix="n", key_hash="n", created_at=datetime(2024, 1, 1, 0))
        s.add_all([aware, naive])
        s.commit()
        ids = aware.id, naive.id
    with factory() as s:
        for i in ids:
            row = s.get(ApiKey, i)
            assert row.created_at == datetime(2024, 1, 1, tzinfo=timezone.utc)
            assert row.created_at.tzinfo is timezone.utc
            assert row.revoked_at is None
        # comparisons bind through the type too: 08:59 KST is before midnight UTC
        assert s.scalars(select(ApiKey.id).where(ApiKey.created_at < datetime(2024, 1, 1, 8, 59, tzinfo=KST))).all() == []
        assert len(s.scalars(select(ApiKey.id).where(ApiKey.created_at <= datetime(2024, 1, 1, 9, tzinfo=KST))).all()) == 2
    engine.dispose()


def test_the_models_match_the_migrations(db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []
