"""Several API worker processes on one database, over real HTTP: 10 concurrent sessions x 5 turns each.

Two servers per database, each session's turns alternating between them (so every turn continues, in another
process, what the previous one stored): SQLite (one WAL file) behind `jinro serve --workers 2` and a second
`jinro serve`; PostgreSQL behind two `jinro serve` processes. Half the turns stream (SSE). Afterwards the DB must hold every turn exactly once, with contiguous
seqs, and no session's facts memory may hold another session's occupation.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import select

from tests.support.api_client import bearer, new_key, parse_sse
from tests.support.knowledge_base import KB, TOPICS, api_lines, build_kb, clone_kb, template_kb
from tests.support.postgres import create_pg_database, drop_pg_database, pg_url, postgres_unavailable
from tests.support.processes import Server
from db.conversation import ChatSession, Message
from db.engine import create_db_engine, session_factory
from db.models import Document, Occupation

pytestmark = pytest.mark.slow
SESSIONS, TURNS = 10, 5
RETRYABLE = {409, 503}


def script(topic: str) -> list[str]:
    return ["안녕하세요", f"{topic}에 대해 알려주세요", "그 직업은 자격증이 필요해?",
            f"{topic} 일을 하려면 어떤 공부를 해야 해요?", "고마워요"]


@dataclass
class Stack:
    name: str
    kb: KB
    servers: list[Server]
    key: str = ""
    retries: int = 0
    pids: set[int] = field(default_factory=set)


@pytest.fixture(scope="module")
def stacks(api_embedder, tmp_path_factory):
    """Both databases with their servers, started together (their start-up overlaps)."""
    emb = api_embedder
    base = tmp_path_factory.mktemp("concurrency")
    sqlite_kb = clone_kb(template_kb(tmp_path_factory.getbasetemp(), emb), base / "sqlite")
    logs = base / "logs"
    out = {"sqlite": Stack("sqlite", sqlite_kb, [Server(sqlite_kb, logs, workers=2), Server(sqlite_kb, logs)])}
    pg_name = None
    if postgres_unavailable() is None:
        pg_name = create_pg_database()
        pg_kb = build_kb(base / "pg", emb, api_lines(), url=pg_url(pg_name))
        out["postgres"] = Stack("postgres", pg_kb, [Server(pg_kb, logs), Server(pg_kb, logs)])
    for stack in out.values():
        stack.key = new_key(stack.kb.url, "client", f"load-{stack.name}")
        for server in stack.servers:
            server.start()
    try:
        for stack in out.values():
            for server in stack.servers:
                server.wait_ready(240)
        yield out
    finally:
        for stack in out.values():
            for server in stack.servers:
                server.stop()
        if pg_name:
            drop_pg_database(pg_name)


async def _turn(http: httpx.AsyncClient, stack: Stack, sid: str, text: str, sse: bool) -> dict:
    for _attempt in range(6):
        if sse:
            async with http.stream("POST", f"/v1/sessions/{sid}/messages", json={"text": text},
                                   headers={"Accept": "text/event-stream"}) as r:
                if r.status_code in RETRYABLE:
                    await r.aread()
                    stack.retries += 1
                    await asyncio.sleep(0.05)
                    continue
                assert r.status_code == 200, await r.aread()
                events = [e async for e in _aparse(r)]
            assert events[-1].event == "final", events[-3:]
            final = events[-1].json()
            assert "".join(e.json()["text"] for e in events if e.event == "token").strip() == final["answer"]
            return final
        r = await http.post(f"/v1/sessions/{sid}/messages", json={"text": text})
        if r.status_code in RETRYABLE:  # "another turn was stored at the same time — send it again"
            stack.retries += 1
            await asyncio.sleep(0.05)
            continue
        assert r.status_code == 200, r.text
        return r.json()
    raise AssertionError(f"turn {text!r} of {sid} kept failing")


async def _aparse(r: httpx.Response):
    lines = [line async for line in r.aiter_lines()]
    for e in parse_sse(lines):
        yield e


async def _session(clients: list[httpx.AsyncClient], stack: Stack, i: int) -> tuple[str, list[dict]]:
    first = clients[i % len(clients)]
    r = await first.post("/v1/sessions", json={"profile": {"school": "고2"}})
    assert r.status_code == 201, r.text
    sid, results = r.json()["id"], []
    for k, text in enumerate(script(TOPICS[i])):
        http = clients[(i + k) % len(clients)]  # SQLite: alternate processes turn by turn
        results.append(await _turn(http, stack, sid, text, sse=k % 2 == 1))
    return sid, results


async def _load(stack: Stack) -> list[tuple[str, list[dict]]]:
    clients = [httpx.AsyncClient(base_url=s.url, headers=bearer(stack.key), timeout=120) for s in stack.servers]
    try:
        out = await asyncio.gather(*(_session(clients, stack, i) for i in range(SESSIONS)))
        for s in stack.servers:  # which worker processes accept connections: 30 fresh ones at once
            async def pid(url: str) -> int:
                async with httpx.AsyncClient(base_url=url, timeout=30) as fresh:
                    return (await fresh.get("/healthz")).json()["pid"]

            stack.pids.update(await asyncio.gather(*(pid(s.url) for _ in range(30))))
        return out
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_sessions_over_several_workers(backend: str, stacks: dict) -> None:
    if backend not in stacks:
        pytest.skip(f"PostgreSQL unavailable: {postgres_unavailable()}")
    stack = stacks[backend]
    results = asyncio.run(_load(stack))
    for n, server in enumerate(stack.servers):
        assert server.logs().count("Started server process") == server.workers, server.logs()[-2000:]
        # /metrics adds up the samples of all of a server's workers: the turns it served, exactly
        served = sum(1 for i in range(SESSIONS) for k in range(TURNS) if (i + k) % len(stack.servers) == n)
        metrics = httpx.get(server.url + "/metrics", timeout=30).text
        counted = sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("jinro_turns_total{"))
        assert counted == served, (server.workers, counted, served)
    assert len(stack.pids) >= 2, "the turns were not served by several worker processes"
    for server in stack.servers:  # keep-alive requests are not held back by Nagle + delayed ACK (~40 ms each)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                http.get("/healthz")
                times.append((time.perf_counter() - t0) * 1000)
        assert statistics.median(times) < 25, (server.workers, times)

    engine = create_db_engine(stack.kb.url)
    factory = session_factory(engine)
    try:
        with factory() as s:
            topic_ids = {name: s.scalar(select(Document.external_id).join(Occupation, Occupation.document_id == Document.id)
                                        .where(Occupation.name == name)) for name in TOPICS}
            assert all(topic_ids.values()), topic_ids
            for i, (sid, answers) in enumerate(results):
                rows = list(s.scalars(select(Message).where(Message.session_id == sid).order_by(Message.seq)))
                assert [m.seq for m in rows] == list(range(1, 2 * TURNS + 1)), f"seqs of {sid}"
                assert [m.role for m in rows] == ["student", "counselor"] * TURNS
                assert [m.text for m in rows if m.role == "student"] == script(TOPICS[i])  # each turn exactly once
                assert [m.id for m in rows if m.role == "counselor"] == [a["message_id"] for a in answers]
                assert all(a["session_id"] == sid for a in answers)
                session = s.get(ChatSession, sid)
                assert session.turns == TURNS
                remembered = {f.get("external_id") for f in session.facts}
                others = {topic_ids[t] for j, t in enumerate(TOPICS) if j != i}
                assert topic_ids[TOPICS[i]] in remembered, (TOPICS[i], remembered)
                assert not remembered & others, f"session {i} remembers another session's occupation: {remembered & others}"
                assert TOPICS[i].split("(")[0] in answers[1]["answer"]
    finally:
        engine.dispose()
    print(json.dumps({"backend": backend, "turns": SESSIONS * TURNS, "retries": stack.retries,
                      "worker_pids": len(stack.pids)}))


ONE_SESSION_TURNS, RUNS = 20, 20
CRISIS = "요즘 너무 힘들어서 죽고 싶어요"


async def _one_session_at_once(stack: Stack, run: int) -> str:
    """20 turns of one session sent at the same moment over the stack's servers, one of them a crisis turn."""
    clients = [httpx.AsyncClient(base_url=s.url, headers=bearer(stack.key), timeout=120) for s in stack.servers]
    try:
        r = await clients[0].post("/v1/sessions", json={})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        crisis_at = (run * 7) % ONE_SESSION_TURNS
        texts = [CRISIS if k == crisis_at else f"{TOPICS[k % len(TOPICS)]}에 대해 알려주세요 ({k})"
                 for k in range(ONE_SESSION_TURNS)]
        await asyncio.gather(*(_turn(clients[k % len(clients)], stack, sid, t, sse=False) for k, t in enumerate(texts)))
        return sid
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_turns_of_one_session_keep_every_turn_and_the_safety_state(backend: str, stacks: dict) -> None:
    """Issue 16: turns of one session are stored one at a time on the state the previous one left, and careful mode
    set by a crisis turn is never cleared by a concurrent ordinary turn (20 runs of 20 simultaneous turns)."""
    if backend not in stacks:
        pytest.skip(f"PostgreSQL unavailable: {postgres_unavailable()}")
    from assistant.counselor.memory import KEEP_RECENT_MESSAGES

    stack = stacks[backend]
    sids = [asyncio.run(_one_session_at_once(stack, run)) for run in range(RUNS)]
    engine = create_db_engine(stack.kb.url)
    try:
        with session_factory(engine)() as s:
            for sid in sids:
                session = s.get(ChatSession, sid)
                rows = list(s.scalars(select(Message).where(Message.session_id == sid).order_by(Message.seq)))
                assert [m.seq for m in rows] == list(range(1, 2 * ONE_SESSION_TURNS + 1))
                assert (session.turns, session.careful, session.urgent) == (ONE_SESSION_TURNS, True, True), sid
                # the summary folded every message but the recent ones, in order, exactly once
                assert session.summary_upto == 2 * ONE_SESSION_TURNS - KEEP_RECENT_MESSAGES
                last_folded = " ".join(rows[session.summary_upto - 1].text.split())[:20]
                assert last_folded in session.summary.split("\n")[-1]
    finally:
        engine.dispose()
