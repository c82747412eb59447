"""A small real knowledge DB for the retrieval tests (test_retrieval, test_langchain_retriever, test_cli_eval).

~200 records of the bundled job dictionary: the gold occupations of 20 dev questions (every 10th line of
data/eval/retrieval_dev.jsonl), the occupations the facts tests name, then the dictionary's first records up to
the total. Ingested with the real pipeline (Ingester + resolve_relations + sync_index) into a SQLite file and
a FAISS index under a temp dir, once per test process (`module_kb`); each test module gets its own copy of it
(SQLite backup + index files, a fraction of a second), which it may change freely.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select

from assistant.retrieval.hybrid import HybridRetriever
from assistant.evaluation.retrieval import Question
from db.models import Document
from ingest.embedding import Embedder
from ingest.occupations import resolve_relations
from ingest.indexing import sync_index
from ingest.jobs import read_jobs
from ingest.pipeline import Ingester
from ingest.knowledge import Knowledge, open_knowledge

ROOT = Path(__file__).resolve().parent.parent
JOB_DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"
DEV = ROOT / "data" / "eval" / "retrieval_dev.jsonl"
TOTAL = 200  # with the gold and named occupations; ~240 chunks, ~25 s of embedding on 2 CPUs
EVERY = 10  # dev questions taken: lines 1, 11, 21, ... (20 of 195)

# occupations named by the facts tests (by dJobNm)
NAMED = ("간호사", "웹디자이너", "수의사(일반)", "임상수의사", "인공지능엔지니어", "응용소프트웨어엔지니어")


@lru_cache(maxsize=1)
def dev_questions() -> tuple[Question, ...]:
    lines = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple(Question(o["q"], tuple(o["gold"])) for o in lines[::EVERY])


@lru_cache(maxsize=1)
def _dictionary() -> tuple[tuple[str, str, str], ...]:
    """(dJobCd, dJobNm, line) of every bundled record, in file order."""
    out = []
    with JOB_DICTIONARY.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                o = json.loads(line)
                out.append((o["dJobCd"], o["dJobNm"], line.rstrip("\n")))
    return tuple(out)


def code_of(name: str) -> str:
    return next(code for code, nm, _ in _dictionary() if nm == name)


def kb_lines(total: int = TOTAL) -> list[str]:
    wanted = {g.removeprefix("job:") for q in dev_questions() for g in q.gold}
    wanted |= {code_of(n) for n in NAMED}
    chosen = [line for code, _, line in _dictionary() if code in wanted]
    for code, _, line in _dictionary():
        if len(chosen) >= total:
            break
        if code not in wanted:
            chosen.append(line)
    return chosen


@dataclass
class KB:
    directory: Path
    url: str
    knowledge: Knowledge

    @property
    def index_dir(self) -> Path:
        return self.directory / "index"

    def retriever(self, embedder: Embedder, **kwargs) -> HybridRetriever:  # noqa: ANN003
        return HybridRetriever(self.knowledge.factory, embedder, self.knowledge.store(), **kwargs)

    def external_ids(self) -> set[str]:
        with self.knowledge.factory() as s:
            return set(s.scalars(select(Document.external_id)))

    def close(self) -> None:
        self.knowledge.engine.dispose()


def ingest_jobs(knowledge: Knowledge, embedder: Embedder, path: Path) -> None:
    report = Ingester(knowledge.factory, embedder, kind="job").run(read_jobs(path))
    assert not report.problems, report.problems
    with knowledge.factory() as s:
        resolve_relations(s)
        s.commit()
    sync_index(knowledge.factory, knowledge.store())


def build_kb(directory: Path, embedder: Embedder, total: int = TOTAL) -> KB:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "jobs.jsonl"
    source.write_text("\n".join(kb_lines(total)) + "\n", encoding="utf-8")
    url = f"sqlite:///{directory / 'jinro.db'}"
    knowledge = open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder)
    ingest_jobs(knowledge, embedder, source)
    return KB(directory, url, knowledge)


def empty_kb(directory: Path, embedder: Embedder) -> KB:
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / 'jinro.db'}"
    return KB(directory, url, open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder))


def clone_kb(kb: KB, directory: Path, embedder: Embedder) -> KB:
    """A copy (DB through SQLite's backup API, so the WAL is included; index files copied) to change freely."""
    directory.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(kb.directory / "jinro.db")
    dst = sqlite3.connect(directory / "jinro.db")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    shutil.copytree(kb.index_dir, directory / "index")
    url = f"sqlite:///{directory / 'jinro.db'}"
    return KB(directory, url, open_knowledge(url, directory / "index", embedder.model_id, embedder=embedder))


_SHARED: dict[str, KB] = {}


def module_kb(tmp_path_factory, embedder: Embedder, name: str) -> KB:  # noqa: ANN001
    """A private copy of the process-wide test KB (built on first use) in a fresh temp dir."""
    if "kb" not in _SHARED:
        _SHARED["kb"] = build_kb(tmp_path_factory.mktemp("shared-retrieval-kb"), embedder)
    return clone_kb(_SHARED["kb"], tmp_path_factory.mktemp(name), embedder)
