"""`jinro eval retrieval` and `jinro eval safety`, invoked through the root `jinro` app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from tests.support.dictionary import code_of
from tests.support.knowledge_base import KB, module_kb, retrieval_lines

ROOT = Path(__file__).resolve().parent.parent
SAFETY_DEV = ROOT / "data" / "eval" / "safety_dev.jsonl"
METRIC_KEYS = {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"}
DEFAULT_MODES = ["dense", "bm25", "hybrid", "hybrid+facts"]

runner = CliRunner()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = module_kb(tmp_path_factory, embedder, "cli-kb")
    yield kb
    kb.close()


@pytest.fixture
def same_model(embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loads the configured model through resolve_embedder; hand it the session's (cached) instance of the
    same model, so documents the test KB already embedded are not embedded again. Latency is not asserted here."""
    import ingest.knowledge

    real = ingest.knowledge.resolve_embedder
    monkeypatch.setattr(ingest.knowledge, "resolve_embedder",
                        lambda spec, **kw: (embedder, None) if spec == embedder.model_id else real(spec, **kw))


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    rows = [
        {"q": "간호사가 되려면 대학 꼭 나와야 하나요?", "gold": [f"job:{code_of('간호사')}"]},
        {"q": "아픈 동물 치료하는 일 하고 싶은데 어떤 직업이 있어?", "gold": [f"job:{code_of('수의사(일반)')}", f"job:{code_of('임상수의사')}"]},
        {"q": "홈페이지 화면을 보기 좋게 꾸미는 일은 어떤 직업이야?", "gold": [f"job:{code_of('웹디자이너')}"]},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def invoke(*args: str):
    return runner.invoke(app, ["eval", *args], env={"COLUMNS": "200"})


def one_json_object(stdout: str) -> dict:
    text = stdout.strip()
    obj = json.loads(text)  # the whole of stdout is exactly one JSON document
    assert isinstance(obj, dict)
    return obj


def test_retrieval_json_with_db(kb: KB, questions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINRO_DATA_DIR", str(kb.directory))  # its index; the DB comes from --db
    result = invoke("retrieval", str(questions), "--db", kb.url, "--json")
    assert result.exit_code == 0, result.output
    report = one_json_object(result.stdout)
    assert list(report) == DEFAULT_MODES
    for mode, row in report.items():
        assert set(row) == METRIC_KEYS, mode
        for key in METRIC_KEYS - {"p50_ms", "p95_ms"}:
            assert 0.0 <= row[key] <= 1.0
        assert 0 < row["p50_ms"] <= row["p95_ms"]
    assert report["hybrid+facts"]["recall@5"] == 1.0


def test_retrieval_table_modes_and_failures(kb: KB, questions: Path, same_model: None) -> None:
    result = invoke("retrieval", str(questions), "--db", kb.url, "--modes", "bigram, hybrid", "--k", "5", "--failures", "2")
    assert result.exit_code == 0, result.output
    for text in ("Recall@5", "MRR@10", "nDCG@10", "p95 ms", "bigram", "hybrid"):
        assert text in result.stdout
    first_cells = [line.strip("│┃ ").split(" ")[0] for line in result.stdout.splitlines() if line.startswith("│")]
    assert first_cells == ["bigram", "hybrid"] or first_cells[:2] == ["bigram", "hybrid"], result.stdout

    result = invoke("retrieval", str(questions), "--db", kb.url, "--modes", "bm25", "--json", "--failures", "5")
    assert result.exit_code == 0, result.output
    report = one_json_object(result.stdout)
    assert list(report) == ["bm25"]
    assert isinstance(report["bm25"]["failures"], list)


def test_retrieval_squad_file_brings_its_own_documents(tmp_path: Path, same_model: None) -> None:
    squad = {
        "version": "KorQuAD_v1.0_test",
        "data": [
            {"title": "제빵사", "paragraphs": [
                {"context": "제빵사는 밀가루와 효모로 반죽을 만들고 오븐에 빵을 구워 판매한다. 새벽에 일을 시작하는 경우가 많다.",
                 "qas": [{"id": "1", "question": "빵을 굽는 직업은 무엇인가?", "answers": [{"text": "제빵사", "answer_start": 0}]}]},
                {"context": "제빵기능사 자격증은 한국산업인력공단에서 시행하는 시험에 합격하면 받을 수 있다.",
                 "qas": [{"id": "2", "question": "제빵기능사 자격증 시험은 어디서 시행하나?", "answers": [{"text": "한국산업인력공단", "answer_start": 0}]}]},
            ]},
            {"title": "소방관", "paragraphs": [
                {"context": "소방관은 화재를 진압하고 사고 현장에서 사람을 구조하며 응급 환자를 병원으로 이송한다.",
                 "qas": [{"id": "3", "question": "불을 끄고 사람을 구하는 사람은 누구인가?", "answers": [{"text": "소방관", "answer_start": 0}]}]},
            ]},
        ],
    }
    path = tmp_path / "korquad_tiny.json"
    path.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    result = invoke("retrieval", str(path), "--modes", "bm25,hybrid", "--json")
    assert result.exit_code == 0, result.output
    report = one_json_object(result.stdout)
    assert list(report) == ["bm25", "hybrid"]
    assert report["hybrid"]["recall@5"] == 1.0  # three paragraphs: every gold is in the top 5
    assert report["bm25"]["recall@1"] >= 2 / 3

    result = invoke("retrieval", str(path), "--db", "sqlite:///x.db")
    assert result.exit_code != 0
    assert "--db" in result.stderr


def test_retrieval_on_a_corpus_file(tmp_path: Path, questions: Path, same_model: None) -> None:
    corpus = tmp_path / "jobs.jsonl"
    corpus.write_text("\n".join(retrieval_lines(12)) + "\n", encoding="utf-8")  # the gold jobs come first
    result = invoke("retrieval", str(questions), "--corpus", str(corpus), "--modes", "hybrid+facts", "--json")
    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout)["hybrid+facts"]["recall@1"] == 1.0

    docs = tmp_path / "guide.md"
    docs.write_text("# 진로 상담 안내\n\n진로 상담은 학생의 흥미와 적성을 함께 살펴보는 과정입니다.\n", encoding="utf-8")
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"q": "진로 상담은 무엇을 살펴보나요?", "gold": ["file:guide.md"]}, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    result = invoke("retrieval", str(q), "--corpus", str(docs), "--modes", "bm25", "--json")
    assert result.exit_code == 0, result.output
    report = one_json_object(result.stdout)
    assert set(report["bm25"]) == METRIC_KEYS
    assert report["bm25"]["recall@1"] == 1.0


def test_malformed_eval_file_gives_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "간호사", "gold": ["job:K1"]}\n{"q": "broken", "gold": \n', encoding="utf-8")
    result = invoke("retrieval", str(bad), "--json")
    assert result.exit_code != 0
    assert f"{bad}:2" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output

    no_gold = tmp_path / "no_gold.jsonl"
    no_gold.write_text('\n{"q": "간호사"}\n', encoding="utf-8")
    result = invoke("retrieval", str(no_gold))
    assert result.exit_code != 0 and f"{no_gold}:2" in result.stderr

    squad = tmp_path / "bad_squad.json"
    squad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}), encoding="utf-8")
    result = invoke("retrieval", str(squad))
    assert result.exit_code != 0 and "context" in result.stderr and "Traceback" not in result.output

    result = invoke("retrieval", str(tmp_path / "missing.jsonl"))
    assert result.exit_code != 0 and "missing.jsonl" in result.stderr


def test_empty_knowledge_db_and_bad_modes(tmp_path: Path, questions: Path) -> None:
    result = invoke("retrieval", str(questions), "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.exit_code != 0
    assert "ingest jobs data/job_dictionary" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    unsupported = tmp_path / "corpus.json"
    unsupported.write_text('{"a": 1}', encoding="utf-8")
    result = invoke("retrieval", str(questions), "--corpus", str(unsupported))
    assert result.exit_code != 0
    assert "unsupported format" in result.stderr and "no document could be ingested" in result.stderr

    result = invoke("retrieval", str(questions), "--corpus", str(tmp_path / "nope.jsonl"), "--db", "sqlite:///x.db")
    assert result.exit_code != 0 and "--db cannot be combined" in result.stderr

    result = invoke("retrieval", str(questions), "--modes", "dense,semantic")
    assert result.exit_code != 0
    assert "semantic" in result.stderr and "hybrid+facts" in result.stderr


def test_safety_json_and_table() -> None:
    result = invoke("safety", "--file", str(SAFETY_DEV), "--json")
    assert result.exit_code == 0, result.output
    report = one_json_object(result.stdout)
    assert {"precision", "recall", "f1", "tp", "fp", "fn", "tn", "n", "errors"} <= set(report)
    assert report["n"] == sum(1 for line in SAFETY_DEV.read_text(encoding="utf-8").splitlines() if line.strip())
    assert 0.0 <= report["f1"] <= 1.0

    result = invoke("safety", "--file", str(SAFETY_DEV))
    assert result.exit_code == 0, result.output
    assert "precision" in result.stdout and "recall" in result.stdout


def test_safety_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "safety.jsonl"
    bad.write_text('{"text": "죽고 싶어", "crisis": true, "category": "suicide"}\n{"text": "x", "crisis": "yes", "category": null}\n',
                   encoding="utf-8")
    result = invoke("safety", "--file", str(bad), "--json")
    assert result.exit_code != 0
    assert f"{bad}:2" in result.stderr
    assert result.stdout == ""


def test_types_json_and_the_rules_peer(tmp_path: Path) -> None:
    f = tmp_path / "typed.jsonl"
    f.write_text("\n".join(json.dumps({"q": q, "type": t}, ensure_ascii=False) for q, t in [
        ("간호사 되려면 자격증 뭐 따야 돼?", "certificate"), ("웹디자이너 연봉 얼마야?", "salary_outlook"),
        ("요리 좋아하는데 무슨 직업 있어?", "explore"), ("수의사 되려면 어떻게 해야 돼요?", "how_to_become")]) + "\n")
    model = json.loads(runner.invoke(app, ["eval", "types", str(f), "--json"]).stdout)
    rules = json.loads(runner.invoke(app, ["eval", "types", str(f), "--json", "--rules"]).stdout)
    assert model["n"] == 4 and set(model["per_type"]) == {"certificate", "salary", "explore", "how_to_become"}
    assert model["macro_f1"] == 1.0 and model["predictor"] == "classifier"
    assert rules["per_type"]["how_to_become"]["recall"] == 0.0  # the rules have no such type
    bad = runner.invoke(app, ["eval", "types", str(tmp_path / "none.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.stderr


@pytest.mark.parametrize("command", ["retrieval", "safety", "types"])
def test_help_has_an_example(command: str) -> None:
    result = runner.invoke(app, ["eval", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.stdout
