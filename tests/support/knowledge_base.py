"""ONE builder of small real knowledge DBs for tests and benchmarks: records of the bundled job dictionary ingested
with the real pipeline (Ingester + resolve_relations + sync_index) into a database (a SQLite file by default, or
any URL: PostgreSQL, pgvector) and its FAISS index under a directory.

Two record sets, ~200 records each (~240 chunks, ~25 s of embedding on 2 CPUs):
- `api_lines`: the occupations the API tests name (`TOPICS`) first, then the dictionary's head;
- `retrieval_lines`: the gold occupations of 20 dev questions (`dev_questions`, every 10th line of
  data/eval/retrieval_dev.jsonl) and the occupations the facts tests name (`NAMED`), then the dictionary's head.

Each is built once per test process and copied per test module (SQLite backup + index files, a fraction of a
second), which may change its copy freely: `template_kb` (the API set, files only) and `module_kb` (the retrieval
set, opened). A KB built or copied with `keep_open=True` / an embedder holds its open `Knowledge` (`kb.knowledge`);
otherwise it is files only, for `jinro` processes (`kb.env()`) or a runtime (`make_runtime`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import select

from assistant.counselor.turn import Counselor, CounselorConfig
from assistant.evaluation.retrieval import Question
from assistant.generation.grounded import GroundedGenerator
from assistant.retrieval.hybrid import HybridRetriever
from assistant.runtime import Runtime, screen_embedder
from db.models import Document
from db.settings import Settings
from ingest.embedding import Embedder
from ingest.indexing import sync_index
from ingest.jobs import read_jobs
from ingest.knowledge import Knowledge, open_knowledge
from ingest.occupations import resolve_relations
from ingest.pipeline import Ingester
from tests.support import ROOT
from tests.support.dictionary import code_of, kb_lines

TOTAL = 200
EMBEDDER_ID = "e5-small"
# occupations the API tests name (the first three are the issue's; the ten are the concurrency test's topics)
TOPICS = ("간호사", "수의사(일반)", "웹디자이너", "영상기자", "RPA개발자", "급식영양사", "머천다이저", "특수분장사",
          "운동선수트레이너", "커피향미감정평가사")
# occupations named by the facts tests (by dJobNm)
NAMED = ("간호사", "웹디자이너", "수의사(일반)", "임상수의사", "인공지능엔지니어", "응용소프트웨어엔지니어")
RETRIEVAL_DEV = ROOT / "data" / "eval" / "retrieval_dev.jsonl"
EVERY = 10  # dev questions taken: lines 1, 11, 21, ... (20 of 195)


# ------------------------------------------------------------------------------------------------ record sets

@lru_cache(maxsize=1)
def dev_questions() -> tuple[Question, ...]:
    """The 20 dev questions the retrieval set answers (every 10th line of data/eval/retrieval_dev.jsonl)."""
    lines = [json.loads(line) for line in RETRIEVAL_DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple(Question(o["q"], tuple(o["gold"])) for o in lines[::EVERY])


def api_lines(total: int = TOTAL) -> list[str]:
    return kb_lines(total, names=TOPICS)


def retrieval_lines(total: int = TOTAL) -> list[str]:
    gold = {g.removeprefix("job:") for q in dev_questions() for g in q.gold}
    return kb_lines(total, codes=gold | {code_of(n) for n in NAMED})


# ------------------------------------------------------------------------------------------------ the KB

@dataclass
class KB:
    """A knowledge DB: the database at `url`, its FAISS index under `directory/index`, and `knowledge` when open."""

    directory: Path
    url: str
    knowledge: Knowledge | None = None

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

    def _open(self) -> Knowledge:
        if self.knowledge is None:
            raise RuntimeError("this KB is files only: build it with keep_open=True, or clone it with an embedder")
        return self.knowledge

    def retriever(self, embedder: Embedder, **kwargs: Any) -> HybridRetriever:
        k = self._open()
        return HybridRetriever(k.factory, embedder, k.store(), **kwargs)

    def external_ids(self) -> set[str]:
        with self._open().factory() as s:
            return set(s.scalars(select(Document.external_id)))

    def close(self) -> None:
        if self.knowledge is not None:
            self.knowledge.engine.dispose()


def ingest_jobs(knowledge: Knowledge, embedder: Embedder, path: Path) -> None:
    """Ingest a job-dictionary JSONL file as the `ingest jobs` command does: documents, related occupations, index."""
    report = Ingester(knowledge.factory, embedder, kind="job").run(read_jobs(path))
    assert not report.problems, report.problems
    with knowledge.factory() as s:
        resolve_relations(s)
        s.commit()
    sync_index(knowledge.factory, knowledge.store())


def build_kb(directory: Path, embedder: Embedder, lines: Sequence[str], *, url: str | None = None,
             vector_store: str | None = None, keep_open: bool = False) -> KB:
    """A knowledge DB of the job-dictionary `lines` (written to `directory/jobs.jsonl`) at `url` (default: a SQLite
    file in `directory`), with its index under `directory/index`."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "jobs.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    url = url or f"sqlite:///{directory / 'jinro.db'}"
    extra = {"vector_store": vector_store} if vector_store else {}
    knowledge = open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder, **extra)
    try:
        ingest_jobs(knowledge, embedder, source)
    except BaseException:
        knowledge.engine.dispose()
        raise
    if not keep_open:
        knowledge.engine.dispose()
    return KB(directory, url, knowledge if keep_open else None)


def empty_kb(directory: Path, embedder: Embedder) -> KB:
    """An open, empty SQLite knowledge DB in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / 'jinro.db'}"
    return KB(directory, url, open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder))


def clone_kb(kb: KB, directory: Path, embedder: Embedder | None = None) -> KB:
    """A copy of a SQLite KB (the DB through SQLite's backup API, so the WAL is included; the index files copied) to
    change freely; open when `embedder` is given."""
    directory.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(kb.directory / "jinro.db"), sqlite3.connect(directory / "jinro.db")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    shutil.copytree(kb.index_dir, directory / "index")
    url = f"sqlite:///{directory / 'jinro.db'}"
    if embedder is None:
        return KB(directory, url)
    return KB(directory, url, open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder))


_templates: dict[str, KB] = {}


def template_kb(base: Path, embedder: Embedder) -> KB:
    """The session's one SQLite knowledge DB of `api_lines` (built on first use; files only: clone it)."""
    if "api" not in _templates:
        _templates["api"] = build_kb(base / "api-kb-template", embedder, api_lines())
    return _templates["api"]


def module_kb(tmp_path_factory: Any, embedder: Embedder, name: str) -> KB:
    """An open private copy of the process-wide KB of `retrieval_lines` (built on first use) in a fresh temp dir."""
    if "retrieval" not in _templates:
        _templates["retrieval"] = build_kb(tmp_path_factory.mktemp("shared-retrieval-kb"), embedder,
                                           retrieval_lines())
    return clone_kb(_templates["retrieval"], tmp_path_factory.mktemp(name), embedder)


def make_runtime(kb: KB, embedder: Embedder, *, idle_minutes: int | None = 60 * 24 * 30,
                 review_sample_rate: float = 0.0) -> Runtime:
    """The counselor on `kb` with the grounded generator (random review sampling off unless asked); its retriever
    builds new snapshots in the background, as the API's does."""
    k = open_knowledge(kb.url, kb.index_dir, embedder.model_id, embedder=embedder)
    retriever = HybridRetriever(k.factory, k.embedder, k.store(), background=True)
    config = CounselorConfig(review_sample_rate=review_sample_rate,
                             idle_timeout=timedelta(minutes=idle_minutes) if idle_minutes else None)
    screen, layers = screen_embedder(retriever.embedder)  # as build_runtime: the crisis screen reads e5 vectors
    return Runtime(k, retriever, Counselor(k.factory, retriever, GroundedGenerator(), config, screen_embedder=screen),
                   layers)
