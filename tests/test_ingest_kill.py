"""A real `ingest jobs` process SIGKILLed at several moments leaves a consistent DB, and the same command run again
finishes the job: the outcome equals a clean run.

One test, one SQLite DB, two kills in a row, each checked on its own:
  1. right after the first batch of documents is committed (while the next batch is chunked and embedded),
  2. once all 400 documents are committed, i.e. while the process links related occupations and writes the
     FAISS index, before it exits (the restarted run finds every document unchanged).
Then the command is run to completion. (Each run reloads Kiwi and the embedder, ~6 s of CPU, so the kills are
chained on one DB rather than parametrized over fresh ones.) "A clean run" is what the same reader and chunker produce for the file
(every (document, position, chunk hash) triple), computed in the test.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.dictionary import bundled_lines
from tests.support.processes import ingest_executable
from db.settings import Settings
from ingest.chunking import chunk_context, chunk_text
from ingest.korean import compact
from ingest.jobs import read_jobs

N_DOCS = 400
KILL_AT = (1, N_DOCS)  # committed documents to wait for before each SIGKILL
RUN_TIMEOUT = 600

pytestmark = pytest.mark.slow


def clean_run_chunks(path: Path) -> set[tuple[str, int, str]]:
    s = Settings()
    out = set()
    for doc, _ in read_jobs(path):
        for c in chunk_text(doc.text, s.chunk_size, s.chunk_overlap):
            out.add((doc.external_id, c.position, hashlib.sha256(chunk_context(doc.title, c.text).encode()).hexdigest()))
    return out


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def committed_documents(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with connect(db) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def assert_consistent(db: Path) -> dict[str, int]:
    """The invariants that must hold whenever a process dies: every document complete, nothing dangling."""
    with connect(db) as conn:
        q = lambda sql: conn.execute(sql).fetchall()
        assert q("PRAGMA integrity_check") == [("ok",)]
        assert q("PRAGMA foreign_key_check") == []
        assert q("SELECT d.external_id FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
                 "WHERE c.id IS NULL") == [], "documents without chunks"
        assert q("SELECT c.id FROM chunks c LEFT JOIN documents d ON d.id = c.document_id WHERE d.id IS NULL") == []
        assert q("SELECT document_id, position FROM chunks GROUP BY document_id, position HAVING count(*) > 1") == []
        assert q("SELECT external_id FROM documents GROUP BY external_id HAVING count(*) > 1") == []
        # chunk positions of each document are 0..n-1
        assert q("SELECT document_id FROM chunks GROUP BY document_id HAVING max(position) + 1 != count(*)") == []
        # a job document always comes with its occupation, written in the same transaction
        assert q("SELECT d.external_id FROM documents d LEFT JOIN occupations o ON o.document_id = d.id "
                 "WHERE o.id IS NULL") == []
        assert q("SELECT id FROM chunks WHERE embedding IS NULL OR length(embedding) != 384 * 4") == []
        return {
            "documents": q("SELECT count(*) FROM documents")[0][0],
            "chunks": q("SELECT count(*) FROM chunks")[0][0],
        }


def start(path: Path, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    return subprocess.Popen([*ingest_executable(), "jobs", str(path)], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ingest_executable(), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          env=os.environ.copy())


def kill_when_committed(proc: subprocess.Popen, db: Path, target: int) -> tuple[bool, int]:
    """SIGKILL `proc` as soon as `target` documents are committed; (killed, documents seen when killed)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False, committed_documents(db)
        seen = committed_documents(db)
        if seen >= target:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return True, seen
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"ingest did not commit {target} documents within {RUN_TIMEOUT} s")


def test_sigkilled_ingest_leaves_a_consistent_db_and_reruns_to_a_clean_result(tmp_path: Path, jinro_env: Path) -> None:
    path = tmp_path / "jobs400.jsonl"
    path.write_text("\n".join(bundled_lines(N_DOCS)) + "\n", encoding="utf-8")
    expected = clean_run_chunks(path)
    db = jinro_env / "jinro.db"

    kills = []
    for n, target in enumerate(KILL_AT):
        log = tmp_path / f"run{n}.log"
        proc = start(path, log)
        killed, seen = kill_when_committed(proc, db, target)
        kills.append((target, killed, seen, proc.returncode))
        if not killed:  # it finished before we could kill it: that run must have succeeded
            assert proc.returncode == 0, log.read_text()
        assert proc.returncode in (0, -signal.SIGKILL), log.read_text()
        counts = assert_consistent(db)
        assert counts["documents"] >= min(target, N_DOCS)
        if target == N_DOCS:
            verify = run("verify")  # may report the index out of sync, but must say so cleanly
            assert verify.returncode in (0, 1) and "Traceback" not in verify.stderr, verify.stderr
    assert any(killed for _, killed, _, _ in kills), kills
    print("kills (target, killed, documents seen, returncode):", kills)

    final = run("jobs", str(path))
    assert final.returncode == 0, final.stdout + final.stderr
    assert "problems 0" in final.stdout
    verify = run("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    counts = assert_consistent(db)
    assert counts == {"documents": N_DOCS, "chunks": len(expected)}
    with connect(db) as conn:
        stored = set(conn.execute("SELECT d.external_id, c.position, c.content_hash FROM chunks c "
                                  "JOIN documents d ON d.id = c.document_id").fetchall())
        assert stored == expected  # exactly the chunks of a clean run
        assert conn.execute("SELECT count(*) FROM occupations").fetchone()[0] == N_DOCS
        # related occupations are linked as a clean run links them, even though the run that committed the
        # last documents was killed before it could link them
        names: dict[str, list[int]] = {}
        for occ_id, name in conn.execute("SELECT id, name FROM occupations"):
            names.setdefault(compact(name), []).append(occ_id)
        for related_name, related_id in conn.execute("SELECT related_name, related_id FROM occupation_relations"):
            ids = names.get(compact(related_name), [])
            assert related_id == (ids[0] if len(ids) == 1 else None), related_name
        runs = conn.execute("SELECT status FROM ingest_runs ORDER BY id").fetchall()
        assert runs[-1] == ("ok",)

    idle = run("jobs", str(path))  # and once more: nothing left to do
    assert idle.returncode == 0 and "chunks embedded 0" in idle.stdout, idle.stdout + idle.stderr
