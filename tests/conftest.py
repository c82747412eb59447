"""Shared fixtures: a DB URL per backend (SQLite file / fresh PostgreSQL database), a small job dictionary, the
real embedder (loaded once), and JINRO_* environment isolation.

PostgreSQL tests need the server at 127.0.0.1:5432 (user postgres, trust auth, database `test` reachable). When
it cannot be reached those tests are skipped and the terminal summary says so in a banner.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOB_DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"

PG_HOST, PG_USER, PG_ADMIN_DB = "127.0.0.1", "postgres", "test"
PG_PORT = int(os.environ.get("JINRO_TEST_PG_PORT", "5432"))  # override only to try the skip banner
_JINRO_ENV = ("JINRO_DATA_DIR", "JINRO_DB_URL", "JINRO_EMBEDDER", "JINRO_CHUNK_SIZE", "JINRO_CHUNK_OVERLAP",
              "JINRO_VECTOR_STORE")

# Records of the bundled dictionary that small_jobs always includes, beside the first 30 lines:
# certificates with commas inside parentheses, and connectJob names that are themselves in the set.
SMALL_JOBS_EXTRA = (
    "K000001535",  # 아동학대전담공무원: 사회복지사(1급, 2급), 정신건강사회복지사 2급
    "K000004270",  # 사회복지사(일반): 사회복지사(1급, 2급), 정신건강사회복지사, 직업상담사(1급, 2급)
    "K000007565",  # 직업상담사
    "K000001349",  # 고객상담업무관리자: 소비자전문상담사(1급, 2급)
    "K000001350",  # 컨택센터운영관리자 -> connectJob 고객상담업무관리자
    "K000006143",  # 금형설계원
    "K000001297",  # 금형모델프로그래머 -> connectJob 금형설계원
    "K000004655",  # 열처리원
    "K000001444",  # 뜨임원 -> connectJob 열처리원
    "K000001483",  # 담금질원 -> connectJob 열처리원
)
SMALL_JOBS_HEAD = 30


# --------------------------------------------------------------------------------------------------- environment


@pytest.fixture(autouse=True)
def jinro_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own JINRO_DATA_DIR and no inherited JINRO_DB_URL/EMBEDDER/chunk settings."""
    for name in _JINRO_ENV:
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "jinro-data"
    monkeypatch.setenv("JINRO_DATA_DIR", str(data_dir))
    return data_dir


# --------------------------------------------------------------------------------------------------- PostgreSQL

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
        except Exception as exc:  # noqa: BLE001 - any failure means: skip, and say why
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
    reason = postgres_unavailable()
    if reason:
        pytest.skip(f"{_PG_SKIP_PREFIX}: the server at {PG_HOST}:{PG_PORT} cannot be reached ({reason})")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A URL of an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL database dropped afterwards.

    JINRO_DB_URL is set to it too, so CLI invocations in the test use the same database.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jinro.db'}"
        monkeypatch.setenv("JINRO_DB_URL", url)
        yield url
        return
    skip_without_postgres()
    name = create_pg_database()
    url = pg_url(name)
    monkeypatch.setenv("JINRO_DB_URL", url)
    try:
        yield url
    finally:
        drop_pg_database(name)


_PG_SKIP_PREFIX = "PostgreSQL tests skipped"


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: printed after pytest's own short test summary
def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ANN201, ARG001
    """A loud banner when PostgreSQL tests were skipped (counted from the reports, so it works under xdist too)."""
    result = yield
    _postgres_banner(terminalreporter)
    return result


def _postgres_banner(terminalreporter) -> None:  # noqa: ANN001
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
        if _PG_SKIP_PREFIX in reason:
            reasons.append(reason.split(_PG_SKIP_PREFIX, 1)[1].lstrip(": "))
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


# --------------------------------------------------------------------------------------------------- data


@lru_cache(maxsize=1)
def _bundled_records() -> tuple[str, ...]:
    """The non-blank lines of the bundled dictionary, in file order."""
    out = []
    with JOB_DICTIONARY.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(line.rstrip("\n"))
    return tuple(out)


def bundled_lines(n: int | None = None, extra_codes: tuple[str, ...] = ()) -> list[str]:
    """The first `n` lines of the bundled job dictionary, then the lines of `extra_codes` not already in."""
    lines = list(_bundled_records())
    head = lines if n is None else lines[:n]
    codes = {json.loads(line)["dJobCd"] for line in head}
    extra = [line for line in lines if (c := json.loads(line)["dJobCd"]) in extra_codes and c not in codes]
    return head + extra


@pytest.fixture(scope="session")
def small_jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-record JSONL file from the bundled dictionary (read-only: copy it before changing it)."""
    path = tmp_path_factory.mktemp("small_jobs") / "small_jobs.jsonl"
    path.write_text("\n".join(bundled_lines(SMALL_JOBS_HEAD, SMALL_JOBS_EXTRA)) + "\n", encoding="utf-8")
    os.chmod(path, 0o444)
    return path


@pytest.fixture(scope="session")
def small_jobs_records(small_jobs: Path) -> list[dict]:
    return [json.loads(line) for line in small_jobs.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------- embedder


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (USE multilingual v3), loaded once per session.

    Wrapped in our CachedEmbedder so the same chunk text embedded by several tests (each backend ingests the
    same records) is computed once; the vectors are the model's own.
    """
    from ingest.embedding import CachedEmbedder, UniversalSentenceEncoder

    return CachedEmbedder(UniversalSentenceEncoder(), size=50_000)


class HashEmbedder:
    """A tiny deterministic implementation of our `Embedder` interface with another model id (not a real model):
    character trigrams hashed into 64 signed buckets, L2-normalised. For the model-mismatch and reindex tests."""

    model_id = "test-hash-trigram-64"
    dim = 64

    def embed(self, texts):  # noqa: ANN001, ANN201
        import hashlib

        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text} "
            for i in range(len(padded) - 2):
                h = int.from_bytes(hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest(), "big")
                out[row, h % self.dim] += 1.0 if h & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


@pytest.fixture(scope="session")
def other_embedder() -> HashEmbedder:
    return HashEmbedder()


# --------------------------------------------------------------------------------------------------- CLI


def ingest_executable() -> list[str]:
    """The `ingest` console script of this interpreter's environment (as an operator would run it)."""
    script = Path(sys.executable).parent / "ingest"
    if script.exists():
        return [str(script)]
    found = shutil.which("ingest")
    if found:
        return [found]
    return [sys.executable, "-c", "from ingest.cli import app; app()"]
