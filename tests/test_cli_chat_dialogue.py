"""`jinro eval dialogue` and `jinro chat` through the real typer app on a small real knowledge DB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from tests.support.dictionary import code_of
from tests.support.knowledge_base import KB, build_kb, retrieval_lines

runner = CliRunner()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = build_kb(tmp_path_factory.mktemp("dialogue-kb"), embedder, retrieval_lines(80), keep_open=True)
    yield kb
    kb.close()


def _env(kb: KB) -> dict[str, str]:
    return {"JINRO_DATA_DIR": str(kb.directory), "JINRO_DB_URL": kb.url}


def test_eval_dialogue_json(kb: KB, tmp_path: Path) -> None:
    nurse, web = f"job:{code_of('간호사')}", f"job:{code_of('웹디자이너')}"
    lines = [
        {"name": "nurse-cert", "turns": ["간호사가 되고 싶어요", "그 직업은 자격증이 필요해?"], "gold": [nurse], "answer_any": ["간호사"]},
        {"name": "web-nocert", "turns": ["웹 디자이너 어때?", "그럼 자격증은?"], "gold": [web], "answer_any": ["등록된 자격증"]},
        {"name": "wrong-on-purpose", "turns": ["간호사는 무슨 일 해?"], "gold": [web], "answer_any": ["없는 문자열"]},
    ]
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    result = runner.invoke(app, ["eval", "dialogue", "--scenarios", str(f), "--json"], env=_env(kb))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scenarios"] == 3
    assert report["cited"] == pytest.approx(2 / 3, abs=1e-3) and report["answered"] == pytest.approx(2 / 3, abs=1e-3)
    assert [x["name"] for x in report["failures"]] == ["wrong-on-purpose"]


def test_eval_dialogue_per_type_and_a_blind_file_gives_aggregates_only(kb: KB, tmp_path: Path) -> None:
    nurse = f"job:{code_of('간호사')}"
    lines = [{"name": "cert", "turns": ["간호사가 되려면 자격증 필요해?"], "gold": [nurse], "answer_any": ["간호사"],
              "type": "certificate"},
             {"name": "wrong-on-purpose", "turns": ["간호사는 무슨 일 해?"], "gold": [nurse], "answer_any": ["없는 문자열"],
              "type": "duties"}]
    reports = {}
    for name in ("x_dev.jsonl", "x_blind.jsonl"):
        f = tmp_path / name
        f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
        result = runner.invoke(app, ["eval", "dialogue", "--scenarios", str(f), "--json"], env=_env(kb))
        assert result.exit_code == 0, result.output
        reports[name] = json.loads(result.stdout)
    dev, blind = reports["x_dev.jsonl"], reports["x_blind.jsonl"]
    assert dev["per_type"] == blind["per_type"] == {"certificate": {"n": 1, "cited": 1.0, "answered": 1.0},
                                                    "duties": {"n": 1, "cited": 1.0, "answered": 0.0}}
    assert [f["name"] for f in dev["failures"]] == ["wrong-on-purpose"] and dev["answers"]
    assert blind["failures"] == [] and blind["answers"] == [] and blind["errors_withheld"] is True
    assert blind["answered"] == dev["answered"] == 0.5
    table = runner.invoke(app, ["eval", "dialogue", "--scenarios", str(tmp_path / "x_blind.jsonl")], env=_env(kb))
    assert "only aggregates" in table.output and "wrong-on-purpose" not in table.output


def test_eval_dialogue_bad_file(kb: KB, tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"turns": []}\n', encoding="utf-8")
    result = runner.invoke(app, ["eval", "dialogue", "--scenarios", str(f)], env=_env(kb))
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output


def test_chat_demo_remembers_the_occupation(kb: KB) -> None:
    result = runner.invoke(app, ["chat", "--demo"], env=_env(kb))
    assert result.exit_code == 0, result.output
    assert "수의사" in result.output and "출처" in result.output


def test_chat_reads_stdin_until_an_empty_line(kb: KB) -> None:
    result = runner.invoke(app, ["chat"], input="간호사가 되고 싶어요\n대학은 꼭 가야 돼?\n\n", env=_env(kb))
    assert result.exit_code == 0, result.output
    assert "대졸" in result.output


def test_chat_on_an_empty_db_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(app, ["chat", "--demo"], env={"JINRO_DATA_DIR": str(tmp_path / "empty")})
    assert result.exit_code == 2 and "ingest jobs" in result.output


def test_the_runtime_is_built_from_the_settings_the_edge_read(kb: KB, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.retrieval.query import load_lexicon
    from assistant.runtime import Runtime
    from db.settings import Settings

    path = tmp_path / "terms.tsv"
    path.write_text("term\ttargets\n덕질\t팬,연예인\n", encoding="utf-8")
    monkeypatch.setenv("JINRO_LEXICON", str(path))
    settings = Settings(data_dir=kb.directory, db_url=kb.url)
    rt = Runtime.from_settings(settings)
    try:
        assert rt.retriever.lexicon is load_lexicon(path)  # JINRO_LEXICON reaches the retriever through the runtime
        assert rt.knowledge.vector_store == "faiss" and rt.counselor.generator.name == "grounded"
        assert rt.counselor.config.idle_timeout is None  # only the API refuses (and erases) idle sessions
    finally:
        rt.knowledge.engine.dispose()
    api = Runtime.from_settings(settings, expire_idle_sessions=True, generator="grounded")
    try:
        assert api.counselor.config.idle_timeout.total_seconds() == settings.session_idle_minutes * 60
    finally:
        api.knowledge.engine.dispose()
