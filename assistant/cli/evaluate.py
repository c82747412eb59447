"""`jinro eval ...` commands: measure retrieval and crisis detection on labelled files.

`jinro eval retrieval FILE` reports Recall@1/5/10, MRR@10, nDCG@10 and p50/p95 latency for each retrieval mode,
as a table or (`--json`) as one JSON object keyed by mode. Latency is per query, end to end through
`HybridRetriever.search`, with the query-embedding cache emptied before each mode so no mode rides on the
embeddings of the one before.

`jinro eval safety --file FILE` (or `--split dev|blind` for the crisis bank) reports precision, recall and F1 of the
crisis flag, recall per category and the concern counts; for a blind file only aggregates.

Settings (DB URL, data dir, embedder) are read from `JINRO_*` here, at the edge, and passed down as arguments.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from assistant.errors import EmptyKnowledge, EvalDataError
from assistant.retrieval.query import load_lexicon
from assistant.retrieval.hybrid import MODES, HybridRetriever
from assistant.evaluation.blind import WITHHELD, is_blind
from assistant.evaluation.retrieval import Question, evaluate, load_questions
from db.errors import JinroError
from db.models import Document
from db.settings import Settings
from ingest import service
from ingest.documents import SourceDocument
from ingest.embedding import load_embedder
from ingest.errors import EmptySource, UnsupportedSource
from ingest.knowledge import Knowledge, open_configured, open_knowledge

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure retrieval and safety on labelled files.\n\nExample: jinro eval retrieval data/eval/retrieval_dev.jsonl",
)
console = Console(stderr=True)
out = Console()

DEFAULT_MODES = "dense,bm25,hybrid,hybrid+facts"
EMPTY_HINT = "run `ingest jobs data/job_dictionary` first"


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _warn(message: str) -> None:
    console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def parse_modes(text: str) -> list[str]:
    modes = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not modes:
        raise EvalDataError(f"--modes is empty: give a comma-separated list of {', '.join(MODES)}")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise EvalDataError(f"unknown retrieval mode(s) {', '.join(unknown)}: use one or more of {', '.join(MODES)}")
    return modes


# --------------------------------------------------------------------------------------------- evaluation core


@dataclass
class RetrievalEval:
    """Metrics per mode, plus each question's ranking (for the failure listing)."""

    report: dict[str, dict[str, float]]
    rankings: dict[str, list[list[str]]] = field(default_factory=dict)

    def failures(self, questions: Sequence[Question], mode: str, k: int = 5) -> list[dict]:
        """Questions with no gold document in the top `k` of `mode`."""
        return [
            {"q": q.q, "gold": list(q.gold), "got": ranked[:k]}
            for q, ranked in zip(questions, self.rankings.get(mode, []))
            if not any(r in q.gold for r in ranked[:k])
        ]


def evaluate_retriever(retriever: HybridRetriever, questions: Sequence[Question], modes: Sequence[str], *, k: int = 10,
                       on_progress: Callable[[], None] | None = None) -> RetrievalEval:
    """Evaluate each mode in turn; the query-embedding cache is emptied before each mode (honest latency)."""
    retriever.warm()
    rankings: dict[str, list[list[str]]] = {}
    report: dict[str, dict[str, float]] = {}
    for mode in modes:
        retriever.embedder.clear()
        ranked_lists: list[list[str]] = []

        def search(query: str, m: str) -> list[str]:
            ranked = [h.external_id for h in retriever.search(query, k=k, mode=m).hits]
            ranked_lists.append(ranked)
            return ranked

        report.update(evaluate(search, questions, [mode], on_progress=on_progress))
        rankings[mode] = ranked_lists
    return RetrievalEval(report, rankings)


# --------------------------------------------------------------------------------------------- knowledge to use


def is_job_dictionary(path: Path) -> bool:
    """True when the file (or the first .jsonl of the directory) holds job-dictionary records (`dJobCd`)."""
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            return False
        path = files[0]
    if path.suffix.lower() != ".jsonl":
        return False
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    obj = json.loads(line)
                    return isinstance(obj, dict) and "dJobCd" in obj
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return False


def _corpus_items(path: Path, skipped: Callable[[str], None]) -> tuple[service.Kind, Iterator]:
    from ingest.jobs import read_jobs
    from ingest.readers import ReaderOptions, iter_sources, read_file

    if is_job_dictionary(path):
        return "job", read_jobs(path)

    def docs() -> Iterator:
        for file, root in iter_sources([path]):
            try:
                yield from read_file(file, ReaderOptions(), root=root)
            except (UnsupportedSource, EmptySource) as exc:
                skipped(f"skipped {exc}")

    return "doc", docs()


@contextmanager
def throwaway_knowledge(settings: Settings, corpus: Path | None, docs: Sequence[SourceDocument]) -> Iterator[Knowledge]:
    """A SQLite DB and index in a temp dir holding `corpus` (a file or directory) and `docs`; deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="jinro-eval-") as tmp:
        k = open_knowledge(f"sqlite:///{Path(tmp) / 'jinro.db'}", Path(tmp) / "index", settings.embedder,
                           vector_store="faiss",  # a throwaway SQLite DB: never the deployment's pgvector
                           e5_engine=settings.e5_engine)
        try:
            batches: list[tuple[service.Kind, Iterator | Sequence, str]] = []
            if corpus is not None:
                if not corpus.exists():
                    raise EvalDataError(f"{corpus}: no such file or directory — give the corpus to evaluate on")
                kind, items = _corpus_items(corpus, _warn)
                batches.append((kind, items, f"ingesting {corpus.name}"))
            if docs:
                batches.append(("doc", docs, "ingesting the SQuAD paragraphs"))
            with _progress() as progress:
                for kind, items, label in batches:
                    task = progress.add_task(label, total=len(items) if isinstance(items, Sequence) else None)
                    report = service.ingest_items(k, items, kind=kind, command=f"jinro eval retrieval: {label}",
                                                  chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap,
                                                  on_progress=lambda n, t=task: progress.advance(t, n))
                    for line in report.problems:
                        _warn(line)
            yield k
        finally:
            k.engine.dispose()


def _check_not_empty(k: Knowledge, corpus: Path | None = None) -> None:
    with k.factory() as s:
        n = s.scalar(select(func.count(Document.id))) or 0
    if not n:
        if corpus is not None:
            raise EmptyKnowledge(f"{corpus}: no document could be ingested from it — see the messages above")
        where = make_url(k.engine.url).render_as_string(hide_password=True)
        raise EmptyKnowledge(f"the knowledge DB {where} holds no documents — {EMPTY_HINT}")


def _warn_missing_gold(k: Knowledge, questions: Sequence[Question]) -> None:
    gold = sorted({g for q in questions for g in q.gold})
    found: set[str] = set()
    with k.factory() as s:
        for i in range(0, len(gold), 500):
            found.update(s.scalars(select(Document.external_id).where(Document.external_id.in_(gold[i : i + 500]))))
    missing = [g for g in gold if g not in found]
    if missing:
        _warn(f"{len(missing)} of {len(gold)} gold documents are not in the knowledge DB "
              f"(e.g. {', '.join(missing[:3])}); those questions cannot be answered")


# --------------------------------------------------------------------------------------------- output


def _metrics_table(title: str, report: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("mode")
    for name in ("Recall@1", "Recall@5", "Recall@10", "MRR@10", "nDCG@10", "p50 ms", "p95 ms"):
        table.add_column(name, justify="right")
    for mode, row in report.items():
        table.add_row(
            escape(mode), *(f"{row[key]:.3f}" for key in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")),
            f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}",
        )
    return table


def _print_failures(mode: str, rows: list[dict], n: int) -> None:
    if not rows:
        out.print(f"{escape(mode)}: no failures in the top 5", highlight=False, soft_wrap=True)
        return
    table = Table(title=f"{mode}: {len(rows)} question(s) with no gold document in the top 5 (first {min(n, len(rows))})")
    table.add_column("question")
    table.add_column("gold")
    table.add_column("got (top 5)")
    for r in rows[:n]:
        table.add_row(escape(r["q"]), escape(", ".join(r["gold"])), escape(", ".join(r["got"]) or "-"))
    out.print(table)


# --------------------------------------------------------------------------------------------- commands


@app.command("retrieval")
def retrieval(
    file: Annotated[Path, typer.Argument(help="JSONL of {\"q\": question, \"gold\": list of external_ids} lines, or a SQuAD/KorQuAD JSON file.")],
    db: Annotated[Optional[str], typer.Option("--db", help="Knowledge DB URL (default: JINRO_DB_URL or the SQLite file under JINRO_DATA_DIR).")] = None,
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Evaluate on this corpus instead (job-dictionary JSONL or documents), ingested into a throwaway DB.")] = None,
    modes: Annotated[str, typer.Option("--modes", help=f"Comma-separated modes of {', '.join(MODES)}.")] = DEFAULT_MODES,
    k: Annotated[int, typer.Option("--k", min=1, help="Passages retrieved per question (metrics go to @10).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object keyed by mode.")] = False,
    failures: Annotated[int, typer.Option("--failures", min=0, help="List up to N questions per mode with no gold in the top 5.")] = 0,
    rerank: Annotated[bool, typer.Option("--rerank/--no-rerank", help="Re-rank the fused candidates with the shipped re-ranker of the embedder's model (hybrid modes).")] = True,
) -> None:
    """Recall@1/5/10, MRR@10, nDCG@10 and p50/p95 latency of each retrieval mode on a labelled file.

    A JSONL file is evaluated on the knowledge DB (or on --corpus). A SQuAD/KorQuAD JSON file brings its own
    paragraphs: they are ingested into a throwaway DB first, and each question's gold is its paragraph.

    Example: jinro eval retrieval data/eval/retrieval_dev.jsonl --modes bm25,hybrid+facts --json
    """
    try:
        mode_list = parse_modes(modes)
        questions, squad_docs = load_questions(file)
        if db and (corpus is not None or squad_docs):
            what = "--corpus" if corpus is not None else "a SQuAD file (it is evaluated on its own paragraphs)"
            raise EvalDataError(f"--db cannot be combined with {what}")
        settings = Settings()
        with _knowledge(settings, db, corpus, squad_docs) as know:
            _check_not_empty(know, corpus)
            _warn_missing_gold(know, questions)
            retriever = HybridRetriever(know.factory, know.embedder, know.store(), lexicon=load_lexicon(settings.lexicon),
                                        rerank=rerank)
            with _progress() as progress:
                task = progress.add_task("evaluating", total=len(questions) * len(mode_list))
                result = evaluate_retriever(retriever, questions, mode_list, k=k,
                                            on_progress=lambda: progress.advance(task))
    except JinroError as exc:
        _fail(str(exc))
    report = result.report
    if failures and is_blind(file):
        console.print(WITHHELD, highlight=False)
        failures = 0
    if as_json:
        if failures:
            for mode in mode_list:
                report[mode]["failures"] = result.failures(questions, mode)[:failures]  # type: ignore[assignment]
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    out.print(_metrics_table(f"{file.name}: {len(questions)} questions, k={k}", report))
    for mode, row in report.items():
        for qtype, figures in row.get("per_type", {}).items():
            out.print(f"{escape(mode)} · {escape(qtype)}: n={figures['n']} Recall@1 {figures['recall@1']:.3f} "
                      f"Recall@5 {figures['recall@5']:.3f}", highlight=False)
    if failures:
        for mode in mode_list:
            _print_failures(mode, result.failures(questions, mode), failures)


@contextmanager
def _knowledge(settings: Settings, db: str | None, corpus: Path | None, docs: Sequence[SourceDocument]) -> Iterator[Knowledge]:
    if corpus is not None or docs:
        with throwaway_knowledge(settings, corpus, docs) as k:
            yield k
        return
    k = open_configured(settings, db)
    try:
        yield k
    finally:
        k.engine.dispose()


@app.command("safety")
def safety(
    file: Annotated[Optional[Path], typer.Option("--file", help="JSONL of {\"text\", \"crisis\", \"category\"} lines or crisis-bank items.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="The crisis bank's dev or blind half (data/safety/bank_<split>.jsonl) instead of --file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (metrics and, except for blind, every error).")] = False,
    careful: Annotated[bool, typer.Option("--careful", help="Evaluate the detector's careful (higher-recall) setting.")] = False,
    errors: Annotated[int, typer.Option("--errors", min=0, help="List up to N misclassified examples (never for blind).")] = 10,
    false_positives: Annotated[bool, typer.Option("--false-positives", help="Also measure the crisis flag on all of ChatbotData and every career question in data/eval/.")] = False,
    ngrams_only: Annotated[bool, typer.Option("--ngrams-only", help="Screen with the rules and n-grams alone, without the e5-small sentence head (as where its engine cannot load).")] = False,
) -> None:
    """Precision, recall and F1 of crisis detection, recall per category, the concern counts and the latency.

    It screens as a turn does: rules, n-grams and the sentence head over e5-small vectors (each message is
    embedded: about 20 ms a message). For a blind file only aggregates are printed.

    Example: jinro eval safety --split blind --false-positives --json
    """
    from assistant.evaluation.safety import evaluate_safety, false_positive_rates
    from assistant.safety.bank import BANK_FILES
    from assistant.safety.crisis import sentence_model

    if (file is None) == (split is None):
        _fail("give one of --file FILE or --split dev|blind")
    if split is not None and split not in BANK_FILES:
        _fail(f"--split must be dev or blind, not {split!r}")
    path = file if file is not None else BANK_FILES[split]
    try:
        embedder = None if ngrams_only or sentence_model() is None else load_embedder(sentence_model(), e5_engine=Settings().e5_engine)
        report = evaluate_safety(path, careful=careful, embedder=embedder)
        report["layers"] = "rules + n-grams" + ("" if embedder is None else f" + {embedder.model_id}")
        if false_positives:
            report["false_positives"] = false_positive_rates(embedder)
    except JinroError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    table = Table(title=f"{path.name}: {report['n']} examples, {report['layers']}", show_header=False)
    for key in ("precision", "recall", "f1", "tp", "fp", "fn", "tn", "category_accuracy", "p50_ms", "p95_ms"):
        value = report[key]
        table.add_row(key, "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value))
    for cat, rec in report["per_category_recall"].items():
        table.add_row(f"recall {cat}", "-" if rec is None else f"{rec:.3f} of {report['per_category_n'][cat]}")
    table.add_row("concern", json.dumps(report["concern"], ensure_ascii=False))
    for name, fp in report.get("false_positives", {}).items():
        table.add_row(f"false positives, {name}", f"{fp['crisis']} of {fp['n']} ({fp['rate']:.2%})")
    table.add_row("errors", "withheld (blind)" if report["errors_withheld"] else str(len(report["errors"])))
    out.print(table)
    if errors and report["errors"]:
        err_table = Table(title=f"misclassified (first {min(errors, len(report['errors']))} of {len(report['errors'])})")
        for col in ("text", "expected", "got", "score"):
            err_table.add_column(col)
        for e in report["errors"][:errors]:
            err_table.add_row(escape(e["text"]), str(e["expected"]), str(e["got"]), f"{e['score']:.2f}")
        out.print(err_table)