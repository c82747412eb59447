"""Shared pieces of the API tests (test_api*.py): a small real knowledge DB, keys, real `jinro serve` processes,
and an SSE parser that reads streams the way a client does.

The knowledge DB: ~200 records of the bundled job dictionary (the occupations the tests talk about first),
ingested with the real pipeline (Ingester + resolve_relations + sync_index). It is built ONCE per test session
(`template_kb`) and each test module works on its own copy (`clone_kb`). Chunk vectors come from the real USE
model through a persistent on-disk cache (pytest's cache dir), so only the first run on a machine pays for
embedding; every later run still runs the whole pipeline (chunking, Kiwi, DB writes, index sync).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import httpx
import numpy as np

from assistant.counselor.turn import Counselor, CounselorConfig
from assistant.generation.grounded import GroundedGenerator
from assistant.retrieval.hybrid import HybridRetriever
from assistant.runtime import Runtime
from db.settings import Settings
from ingest.occupations import resolve_relations
from ingest.indexing import sync_index
from ingest.jobs import read_jobs
from ingest.pipeline import Ingester
from ingest.knowledge import open_knowledge

ROOT = Path(__file__).resolve().parent.parent
JOB_DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"
TOTAL = 200
# occupations the API tests name (the first three are the issue's; the ten are the concurrency test's topics)
TOPICS = ("간호사", "수의사(일반)", "웹디자이너", "영상기자", "RPA개발자", "급식영양사", "머천다이저", "특수분장사",
          "운동선수트레이너", "커피향미감정평가사")
EMBEDDER_ID = "use-multilingual-v3"


# ------------------------------------------------------------------------------------------------ embedder

class DiskCachedEmbedder:
    """The real embedder, memoised on disk by (model, text): vectors identical to the model's, computed once."""

    def __init__(self, inner: Any, directory: Path) -> None:
        self.inner, self.model_id = inner, inner.model_id
        self.dim = getattr(inner, "dim", 512)
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "vectors.sqlite", check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, vec BLOB)")
        self._lock = threading.Lock()

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        with self._lock:
            found: dict[str, bytes] = {}
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                q = f"SELECT k, vec FROM v WHERE k IN ({','.join('?' * len(part))})"
                found.update(dict(self._db.execute(q, part).fetchall()))
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            vectors = self.inner.embed([texts[i] for i in missing])
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)",
                                     [(keys[i], np.asarray(v, np.float32).tobytes()) for i, v in zip(missing, vectors)])
                self._db.commit()
            for i, v in zip(missing, vectors):
                found[keys[i]] = np.asarray(v, np.float32).tobytes()
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.vstack([np.frombuffer(found[k], np.float32) for k in keys])


# ------------------------------------------------------------------------------------------------ knowledge DB

@lru_cache(maxsize=1)
def _records() -> tuple[tuple[str, str, str], ...]:
    out = []
    with JOB_DICTIONARY.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                o = json.loads(line)
                out.append((o["dJobCd"], o["dJobNm"], line.rstrip("\n")))
    return tuple(out)


def kb_lines(total: int = TOTAL, topics: Iterable[str] = TOPICS) -> list[str]:
    wanted = set(topics)
    chosen = [line for _, name, line in _records() if name in wanted]
    for _, name, line in _records():
        if len(chosen) >= total:
            break
        if name not in wanted:
            chosen.append(line)
    return chosen


@dataclass
class KB:
    directory: Path
    url: str

    @property
    def index_dir(self) -> Path:
        return self.directory / "index"

    def settings(self, **overrides: Any) -> Settings:
        values = dict(data_dir=self.directory, db_url=self.url, generator="grounded", embedder=EMBEDDER_ID,
                      rate_limit_per_minute=0, redis_url=None)
        values.update(overrides)
        return Settings(**values)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a `jinro` process on this KB."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JINRO_")}
        env.update(JINRO_DATA_DIR=str(self.directory), JINRO_DB_URL=self.url, JINRO_GENERATOR="grounded",
                   JINRO_RATE_LIMIT_PER_MINUTE="0", PYTHONUNBUFFERED="1")
        env.update(extra)
        return env


def build_kb(directory: Path, embedder: Any, url: str | None = None, total: int = TOTAL) -> KB:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "jobs.jsonl"
    source.write_text("\n".join(kb_lines(total)) + "\n", encoding="utf-8")
    url = url or f"sqlite:///{directory / 'jinro.db'}"
    k = open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder)
    try:
        report = Ingester(k.factory, embedder, kind="job").run(read_jobs(source))
        assert not report.problems, report.problems
        with k.factory() as s:
            resolve_relations(s)
            s.commit()
        sync_index(k.factory, k.store())
    finally:
        k.engine.dispose()
    return KB(directory, url)


_template: dict[str, KB] = {}


def template_kb(base: Path, embedder: Any) -> KB:
    """The session's one SQLite knowledge DB (built on first use)."""
    if "kb" not in _template:
        _template["kb"] = build_kb(base / "api-kb-template", embedder)
    return _template["kb"]


def clone_kb(kb: KB, directory: Path) -> KB:
    """A private copy (SQLite backup API, so the WAL is included) with the index files."""
    directory.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(kb.directory / "jinro.db"), sqlite3.connect(directory / "jinro.db")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    shutil.copytree(kb.index_dir, directory / "index")
    return KB(directory, f"sqlite:///{directory / 'jinro.db'}")


def make_runtime(kb: KB, embedder: Any, *, idle_minutes: int | None = 60 * 24 * 30,
                 review_sample_rate: float = 0.0) -> Runtime:
    """The counselor on `kb` with the grounded generator (random review sampling off unless asked)."""
    k = open_knowledge(kb.url, kb.index_dir, embedder.model_id, embedder=embedder)
    retriever = HybridRetriever(k.factory, k.embedder, k.store())
    config = CounselorConfig(review_sample_rate=review_sample_rate,
                             idle_timeout=timedelta(minutes=idle_minutes) if idle_minutes else None)
    return Runtime(k, retriever, Counselor(k.factory, retriever, GroundedGenerator(), config))


def new_key(url: str, role: str, name: str = "") -> str:
    from assistant.api import crud
    from db.engine import create_db_engine, session_factory

    engine = create_db_engine(url)
    try:
        return crud.create_key(session_factory(engine), role, name or role)[1]
    finally:
        engine.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ------------------------------------------------------------------------------------------------ SSE

@dataclass
class Event:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Server-sent events as the WHATWG spec reads them: `event:`/`data:` fields, comments, blank-line dispatch."""
    name, data = "message", []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        fieldname, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if fieldname == "event":
            name = value
        elif fieldname == "data":
            data.append(value)
    if data:
        yield Event(name, "\n".join(data))


def sse_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


# ------------------------------------------------------------------------------------------------ processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jinro_executable() -> list[str]:
    script = Path(sys.executable).parent / "jinro"
    if script.exists():
        return [str(script)]
    found = shutil.which("jinro")
    return [found] if found else [sys.executable, "-c", "from assistant.cli import app; app()"]


@dataclass
class Server:
    """A real `jinro serve` process; its stdout and stderr go to files under `log_dir`."""

    kb: KB
    log_dir: Path
    workers: int = 1
    args: Sequence[str] = ()
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"serve-{self.port}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"serve-{self.port}.err"

    def start(self) -> Server:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*jinro_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(self.workers), *self.args]
        self.proc = subprocess.Popen(cmd, env=self.kb.env(**self.env_extra), stdout=self.stdout_path.open("wb"),
                                     stderr=self.stderr_path.open("wb"), start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"jinro serve exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"jinro serve not ready after {timeout} s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path) if p.exists()]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # uvicorn shuts its workers down on SIGTERM
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


_embedders: dict[str, DiskCachedEmbedder] = {}


def disk_embedder(inner: Any, directory: Path) -> DiskCachedEmbedder:
    """One disk-cached embedder per test session (per cache directory)."""
    key = str(directory)
    if key not in _embedders:
        _embedders[key] = DiskCachedEmbedder(inner, directory)
    return _embedders[key]


def vectors_dir(request: Any, tmp_path_factory: Any) -> Path:
    """pytest's cache dir (kept between runs) or, with the cache plugin off, the session's temp dir."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("jinro-api-vectors"))
    return tmp_path_factory.getbasetemp() / "jinro-api-vectors"
