"""API security: a client sees only its own sessions (every session route), role checks, keys stored hashed,
keys never in the logs (in-process and a real uvicorn's log output), per-key rate limits in process and in Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.api_client import bearer, new_key
from tests.support.knowledge_base import KB, clone_kb, make_runtime, template_kb
from tests.support.processes import Server, jinro_executable
from assistant.api import create_app
from assistant.api.ratelimit import RedisBuckets, build_limiter
from assistant.api.security import KeyScrubber
from db.conversation import ApiKey, ChatSession, Message

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def kb(api_embedder, tmp_path_factory) -> KB:
    return clone_kb(template_kb(tmp_path_factory.getbasetemp(), api_embedder), tmp_path_factory.mktemp("sec-kb"))


@pytest.fixture(scope="module")
def runtime(kb, api_embedder):
    rt = make_runtime(kb, api_embedder)
    rt.counselor.warm()
    yield rt
    rt.knowledge.engine.dispose()


@pytest.fixture(scope="module")
def app(kb, runtime):
    return create_app(kb.settings(), runtime=runtime)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def keys(kb) -> dict[str, str]:
    return {"alice": new_key(kb.url, "client", "alice"), "bob": new_key(kb.url, "client", "bob"),
            "reviewer": new_key(kb.url, "reviewer"), "admin": new_key(kb.url, "admin")}


@pytest.fixture(scope="module")
def alice_session(client, keys):
    """Alice's session with one turn: (session id, counselor message id)."""
    sid = client.post("/v1/sessions", json={"profile": {"school": "고1"}}, headers=bearer(keys["alice"])).json()["id"]
    r = client.post(f"/v1/sessions/{sid}/messages", json={"text": "간호사가 되고 싶어요"}, headers=bearer(keys["alice"]))
    return sid, r.json()["message_id"]


# every route that names a session or a message; a route added later without an entry here fails the
# completeness test below
SESSION_ROUTES = {
    ("GET", "/v1/sessions/{session_id}"): {},
    ("PATCH", "/v1/sessions/{session_id}/profile"): {"json": {"school": "고3"}},
    ("DELETE", "/v1/sessions/{session_id}"): {},
    ("POST", "/v1/sessions/{session_id}/messages"): {"json": {"text": "그 직업은 자격증이 필요해?"}},
    ("POST", "/v1/sessions/{session_id}/messages#sse"): {"json": {"text": "그 직업은 자격증이 필요해?"},
                                                         "headers": {"Accept": "text/event-stream"}},
    ("GET", "/v1/sessions/{session_id}/messages"): {},
    ("POST", "/v1/messages/{message_id}/feedback"): {"json": {"rating": "down"}},
}


def test_session_route_list_is_complete(app) -> None:
    named = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
             if "{session_id}" in path or "{message_id}" in path}
    assert named == {(m, p.split("#")[0]) for m, p in SESSION_ROUTES}


def _snapshot(runtime, sid: str) -> tuple:
    with runtime.knowledge.factory() as s:
        row = s.get(ChatSession, sid)
        n = s.scalar(select(func.count(Message.id)).where(Message.session_id == sid))
        return (row.turns, json.dumps(row.profile, sort_keys=True), row.summary, json.dumps(row.facts), n)


@pytest.mark.parametrize(("method", "path"), list(SESSION_ROUTES), ids=[f"{m} {p}" for m, p in SESSION_ROUTES])
def test_another_clients_session_is_404(method: str, path: str, client, keys, alice_session, runtime) -> None:
    sid, message_id = alice_session
    before = _snapshot(runtime, sid)
    url = path.split("#")[0].format(session_id=sid, message_id=message_id)
    extra = SESSION_ROUTES[(method, path)]
    r = client.request(method, url, json=extra.get("json"), headers={**bearer(keys["bob"]), **extra.get("headers", {})})
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    # the same as for an id that does not exist at all
    missing = client.request(method, path.split("#")[0].format(session_id=str(uuid.uuid4()), message_id=10**9),
                             json=extra.get("json"), headers={**bearer(keys["bob"]), **extra.get("headers", {})})
    assert missing.status_code == 404 and missing.json()["type"] == r.json()["type"]
    assert _snapshot(runtime, sid) == before  # nothing changed in Alice's session
    assert client.get(f"/v1/sessions/{sid}", headers=bearer(keys["alice"])).status_code == 200


def test_other_clients_cannot_list_or_name_a_session(client, keys, alice_session, runtime) -> None:
    sid, _ = alice_session
    listed = client.get("/v1/sessions?limit=200", headers=bearer(keys["bob"])).json()["items"]
    assert sid not in [s["id"] for s in listed]
    before = _snapshot(runtime, sid)
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "안녕"}]},
                    headers={**bearer(keys["bob"]), "X-Session-Id": sid})
    assert r.status_code == 200 and r.headers["x-session-id"] != sid  # Bob gets a session of his own
    assert _snapshot(runtime, sid) == before


def test_admin_reaches_any_session(client, keys, alice_session) -> None:
    sid, _ = alice_session
    assert client.get(f"/v1/sessions/{sid}", headers=bearer(keys["admin"])).status_code == 200
    assert client.get(f"/v1/sessions/{sid}", headers=bearer(keys["reviewer"])).status_code == 404


REVIEW_ROUTES = [("GET", "/v1/review/queue"), ("GET", "/v1/review/1"), ("POST", "/v1/review/1/approve"),
                 ("POST", "/v1/review/1/reject"), ("GET", "/v1/review/export/sft"),
                 ("GET", "/v1/review/export/preferences")]
ADMIN_ROUTES = [("GET", "/v1/knowledge/documents"), ("GET", "/v1/knowledge/stats"),
                ("DELETE", "/v1/knowledge/documents/job:none"), ("POST", "/v1/knowledge/documents")]


@pytest.mark.parametrize("role", ["alice", "reviewer", "admin"])
def test_roles(role: str, client, keys) -> None:
    allowed_review, allowed_admin = role in ("reviewer", "admin"), role == "admin"
    for method, path in REVIEW_ROUTES + ADMIN_ROUTES:
        r = client.request(method, path, headers=bearer(keys[role]))
        allowed = allowed_review if path.startswith("/v1/review") else allowed_admin
        if allowed:
            assert r.status_code != 403, (method, path, r.text)
        else:
            assert r.status_code == 403, (method, path, r.text)
            assert "needs" in r.json()["detail"] and r.headers["content-type"].startswith("application/problem+json")


def test_missing_bad_and_revoked_keys_are_401(client, kb) -> None:
    key = new_key(kb.url, "client", "to revoke")
    assert client.get("/v1/sessions", headers=bearer(key)).status_code == 200
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, bearer("not-a-key"), bearer(key + "x")):
        r = client.get("/v1/sessions", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    done = subprocess.run([*jinro_executable(), "keys", "revoke", key[:12]], env=kb.env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, (key[:12], done.stdout, done.stderr)
    assert client.get("/v1/sessions", headers=bearer(key)).status_code == 401


def test_keys_are_stored_hashed(kb, keys, runtime) -> None:
    with runtime.knowledge.factory() as s:
        rows = {r.name: r for r in s.scalars(select(ApiKey))}
        dump = json.dumps([[str(getattr(r, c.name)) for c in ApiKey.__table__.columns] for r in rows.values()])
    for name in ("alice", "bob"):
        token, row = keys[name], rows[name]
        assert row.key_hash == hashlib.sha256(token.encode()).hexdigest() and row.prefix == token[:12]
    assert not any(token in dump for token in keys.values())
    listed = subprocess.run([*jinro_executable(), "keys", "list", "--json"], env=kb.env(), capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and not any(token in listed.stdout for token in keys.values())
    assert {"alice", "bob"} <= {k["name"] for k in json.loads(listed.stdout)}


def test_keys_never_reach_the_logs(client, keys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = keys["alice"]
    client.get("/v1/sessions", headers=bearer(key))
    client.get(f"/v1/sessions?api_key={key}", headers=bearer(key))
    client.get("/v1/sessions", headers=bearer(key[:-3] + "abc"))  # a wrong key that looks like one
    client.get("/v1/review/queue", headers=bearer(key))  # 403
    logging.getLogger("jinro.api").warning("client sent Authorization: Bearer %s", key)  # a careless log line
    text = caplog.text
    assert "jinro.api.access" in text and "/v1/sessions" in text and key[:12] in text  # prefixes are fine
    assert key not in text and key[12:30] not in text and (key[:-3] + "abc")[12:] not in text


def test_scrubber_keeps_uvicorn_access_records_formattable(keys) -> None:
    key = keys["bob"]
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/v1/sessions?key={key}", "1.1", 200), None)
    KeyScrubber().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert key not in record.getMessage() and "/v1/sessions?key=" in record.getMessage()
    encoded = key.replace("_", "%5F")  # a key URL-encoded in some other query parameter
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/v1/sessions?q={encoded}", "1.1", 200), None)
    KeyScrubber().filter(record)
    assert encoded[12:] not in record.getMessage() and encoded[4:] not in record.getMessage()


@pytest.mark.slow
def test_real_server_logs_have_no_keys(tmp_path: Path, kb: KB) -> None:
    key = new_key(kb.url, "client", "logged")
    server = Server(kb, tmp_path / "logs", args=["--log-level", "debug"]).start()
    try:
        server.wait_ready(180)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            sid = http.post("/v1/sessions", json={}, headers=bearer(key)).json()["id"]
            http.post(f"/v1/sessions/{sid}/messages", json={"text": "안녕하세요"}, headers=bearer(key))
            http.get(f"/v1/sessions/{sid}?api_key={key}", headers=bearer(key))
            http.get("/v1/sessions", headers=bearer(key[:-2] + "zz"))
    finally:
        server.stop()
    logs = server.logs()
    assert f"/v1/sessions/{sid}" in logs and "401" in logs  # uvicorn's and jinro's access lines are there
    assert key not in logs and key[12:] not in logs


def test_rate_limit_in_process(kb, runtime, keys) -> None:
    app = create_app(kb.settings(rate_limit_per_minute=60, rate_limit_burst=3), runtime=runtime)
    with TestClient(app) as c:
        codes = [c.get("/v1/sessions", headers=bearer(keys["alice"])).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert c.get("/v1/sessions", headers=bearer(keys["bob"])).status_code == 200  # per key
        assert "jinro_rate_limited_total 2.0" in c.get("/metrics").text


def _redis_or_skip() -> None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis at {REDIS_URL} unavailable: {exc}")


def test_rate_limit_in_redis_is_shared_by_workers(kb, runtime, keys) -> None:
    _redis_or_skip()
    namespace = f"jinro-test:{uuid.uuid4().hex}"
    one = create_app(kb.settings(), runtime=runtime, limiter=build_limiter(30, 3, REDIS_URL, namespace=namespace))
    two = create_app(kb.settings(), runtime=runtime, limiter=build_limiter(30, 3, REDIS_URL, namespace=namespace))
    assert isinstance(one.state.jinro.limiter, RedisBuckets)
    with TestClient(one) as a, TestClient(two) as b:
        h = bearer(keys["alice"])
        assert [a.get("/v1/sessions", headers=h).status_code for _ in range(2)] == [200, 200]
        assert b.get("/v1/sessions", headers=h).status_code == 200
        r = b.get("/v1/sessions", headers=h)  # the 4th request, counted across both "workers"
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert a.get("/v1/sessions", headers=bearer(keys["bob"])).status_code == 200
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    conn.delete(*conn.keys(f"{namespace}:*") or [f"{namespace}:none"])


def test_rate_limit_survives_redis_outage(kb, runtime, keys, caplog) -> None:
    limiter = build_limiter(60, 2, "redis://127.0.0.1:1/0")
    with TestClient(create_app(kb.settings(), runtime=runtime, limiter=limiter)) as c:
        codes = [c.get("/v1/sessions", headers=bearer(keys["alice"])).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # in-process buckets took over
    assert "Redis unreachable" in caplog.text
