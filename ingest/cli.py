"""`ingest`: load and maintain the counselor's knowledge DB and its vector index."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from db.errors import JinroError
from db.settings import Settings
from db.vectorstore import FLAT_LIMIT
from ingest.errors import EmptySource, SourceError, UnsupportedSource
from ingest.indexing import diff_index, reembed, sync_index
from ingest.jobs import read_jobs
from ingest.pipeline import IngestReport, Limits, upload_limits
from ingest.readers import ReaderOptions, iter_files, read_file
from ingest.knowledge import Knowledge, open_configured
from ingest import service
from ingest.status import knowledge_status

app = typer.Typer(
    help="Load and maintain the jinro knowledge DB.\n\nExample: ingest jobs data/job_dictionary && ingest status",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

DbOpt = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: JINRO_DB_URL or a SQLite file under JINRO_DATA_DIR).")]
IndexKindOpt = Annotated[str, typer.Option("--index-kind", help="flat (exact, default) or hnsw (above ~200k chunks).")]


def _open(db: str | None, index_kind: str = "flat") -> Knowledge:
    settings = Settings()
    k = open_configured(settings, db, index_kind=index_kind)
    service.mark_interrupted(k)  # runs whose process was killed: `interrupted`, not `running` forever
    return k


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False, disable=not console.is_terminal)


def _run_ingest(k: Knowledge, items: Iterator, total: int | None, kind: service.Kind, label: str,
                limits: Limits | None = None) -> IngestReport:
    settings = Settings()
    command = " ".join(shlex.quote(a) for a in ["ingest", *sys.argv[1:]])
    with _progress() as progress:
        task = progress.add_task(label, total=total)
        return service.ingest_items(k, items, kind=kind, command=command, chunk_size=settings.chunk_size,
                            chunk_overlap=settings.chunk_overlap, on_progress=lambda n: progress.advance(task, n),
                            limits=limits)


def _summarise(report: IngestReport) -> None:
    for line in report.problems:
        console.print(f"[yellow]{escape(line)}[/yellow]", highlight=False, soft_wrap=True)
    out.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}; "
        f"chunks embedded {report.chunks_embedded}, reused {report.chunks_reused}; problems {len(report.problems)}"
        + (f"; {report.flagged} passages flagged as instruction-like (kept from students: `ingest status`)"
           if report.flagged else ""),
        highlight=False, soft_wrap=True,
    )
    if report.problems:
        console.print(f"[red]{len(report.problems)} record(s) were not loaded[/red] — fix them and run the same command again "
                      "(unchanged documents are skipped)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def jobs(
    path: Annotated[Path, typer.Argument(help="A 한국직업사전 JSONL file, or a directory of them.")],
    db: DbOpt = None,
) -> None:
    """Load the 한국직업사전 (job dictionary) into the facts tables and as passages.

    Example: ingest jobs data/job_dictionary/job_dictionary_work24.jsonl
    """
    try:
        k = _open(db)
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        total = sum(1 for f in files if f.exists() for line in f.open(encoding="utf-8-sig") if line.strip())
        report = _run_ingest(k, read_jobs(path), total, "job", "occupations")
    except JinroError as exc:
        _fail(str(exc))
    _summarise(report)


def _doc_items(paths: list[Path], options: ReaderOptions, report_skip) -> Iterator:
    for root in paths:
        base = root if root.is_dir() else root.parent
        for file in iter_files([root]):
            try:
                yield from read_file(file, options, root=base)
            except (UnsupportedSource, EmptySource) as exc:
                report_skip(str(exc))


@app.command()
def docs(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (.txt .md .html .pdf .csv .jsonl).")],
    db: DbOpt = None,
    id_field: Annotated[str, typer.Option(help="Id field of .jsonl/.csv records.")] = "id",
    text_field: Annotated[str, typer.Option(help="Text field of .jsonl/.csv records.")] = "text",
    title_field: Annotated[str, typer.Option(help="Title field of .jsonl/.csv records.")] = "title",
    as_of_field: Annotated[str, typer.Option(help="Date/year field of .jsonl/.csv records.")] = "as_of",
) -> None:
    """Load generic documents; a directory is walked. Unsupported or binary files are skipped with a message.

    Example: ingest docs guides/ faq.jsonl --id-field qid --text-field answer
    """
    skipped: list[str] = []
    try:
        for p in paths:
            if not p.exists():
                raise SourceError(f"{p}: no such file or directory — check the path")
        k = _open(db)
        settings = Settings()
        options = ReaderOptions(id_field=id_field, text_field=text_field, title_field=title_field, as_of_field=as_of_field,
                                max_chars=settings.max_document_chars)
        report = _run_ingest(k, _doc_items(paths, options, skipped.append), None, "doc", "documents",
                             limits=upload_limits(settings))
    except JinroError as exc:
        _fail(str(exc))
    for line in skipped:
        console.print(f"[yellow]skipped {escape(line)}[/yellow]", highlight=False, soft_wrap=True)
    _summarise(report)


@app.command()
def migrate(db: DbOpt = None) -> None:
    """Bring the DB schema to the latest migration (a no-op when it is there); a deploy runs it once, before the API.

    With JINRO_VECTOR_STORE=pgvector it also makes sure the `chunk_vectors` table and the configured model's HNSW
    index exist (and fails when the server has no pgvector). Example: ingest migrate
    """
    from db.migrate import current_revision, upgrade

    settings = Settings()
    try:
        k = open_configured(settings, db, migrate=False)
        before = current_revision(k.engine)
        upgrade(k.engine)
        after = current_revision(k.engine)
        vectors = ""
        if settings.vector_store == "pgvector":
            store = k.store()
            vectors = f"; vector store pgvector ({store.model_id}, {len(store)} vectors)"
    except JinroError as exc:
        _fail(str(exc))
    shown = k.engine.url.render_as_string(hide_password=True)
    change = f"{before or 'empty'} -> {after}" if before != after else f"{after} (already up to date)"
    out.print(f"database {shown}: schema {change}{vectors}", highlight=False, soft_wrap=True)


@app.command()
def status(db: DbOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """What the knowledge DB and its vector index hold.

    Example: ingest status --json
    """
    try:
        k = _open(db)
        stats = knowledge_status(k, k.store())
    except JinroError as exc:
        _fail(str(exc))
    if as_json:
        out.print_json(json.dumps(stats, ensure_ascii=False))
        return
    table = Table(title="jinro knowledge", show_header=False)
    for key in ("database", "knowledge_version", "documents", "chunks", "chunks_flagged", "occupations", "certificates", "aliases", "relations"):
        table.add_row(key, escape(str(stats[key])))
    table.add_row("documents by kind", ", ".join(f"{k_}: {v}" for k_, v in stats["documents_by_kind"].items()) or "-")
    emb = stats["embedder"]
    table.add_row("embedder", f"{emb['model']} ({emb['dim']}-d"
                  + (f", {emb['shipped_vectors']:,} shipped vectors" if emb["shipped_vectors"] else "") + ")"
                  + (f"; {emb['chunks_to_embed']:,} chunks still to embed: `ingest reindex`" if emb["chunks_to_embed"] else ""))
    for note in emb["notes"]:
        table.add_row("embedder note", escape(note))
    for job in stats["background_jobs"]:
        table.add_row("background job", f"#{job['id']} {job['status']}: {job['files']} file(s), {job['done']} document(s) done")
    table.add_row("embedding models", ", ".join(f"{k_}: {v}" for k_, v in stats["chunks_by_embedding_model"].items()) or "-")
    idx = stats["index"]
    table.add_row("index", f"{idx['vectors']} vectors, {idx['kind']}, {idx['model']}, "
                  f"{'in sync' if idx['in_sync'] else 'OUT OF SYNC: run `ingest verify`'}")
    if idx["kind"] == "flat" and idx["vectors"] > FLAT_LIMIT:
        table.add_row("hint", f"over {FLAT_LIMIT:,} vectors: `ingest reindex --index-kind hnsw` (or JINRO_VECTOR_STORE=pgvector) is faster")
    if stats["last_runs"]:
        r = stats["last_runs"][0]
        table.add_row("last run", f"{escape(r['command'])} — {r['status']} (+{r['added']} ~{r['updated']} ={r['unchanged']}, {r['errors']} problems)")
    out.print(table)


@app.command()
def remove(
    external_ids: Annotated[list[str], typer.Argument(help="external_id of each document to remove.")],
    db: DbOpt = None,
) -> None:
    """Remove documents (with their chunks, vectors and, for job documents, the occupation facts).

    Example: ingest remove job:K000001224 file:old-guide.md
    """
    try:
        k = _open(db)
        removed, missing = service.remove(k, external_ids)
    except JinroError as exc:
        _fail(str(exc))
    out.print(f"removed {len(removed)} document(s)", highlight=False, soft_wrap=True)
    for e in missing:
        console.print(f"[yellow]{escape(e)}: no such document — see `ingest status` for what is loaded[/yellow]", highlight=False,
                      soft_wrap=True)
    if missing:
        raise typer.Exit(1)


@app.command()
def verify(db: DbOpt = None) -> None:
    """Check that the vector index holds exactly the DB's chunks; exit 1 and say how to repair when it does not.

    Example: ingest verify
    """
    try:
        k = _open(db)
        diff = diff_index(k.factory, k.store())
    except JinroError as exc:
        _fail(str(exc))
    if diff.ok:
        out.print(f"ok: {diff.db_chunks} chunks, {diff.index_vectors} vectors, in sync", highlight=False, soft_wrap=True)
        return
    out.print(
        f"NOT IN SYNC: {len(diff.missing)} chunk(s) missing from the index, {len(diff.orphans)} orphan vector(s), "
        f"{diff.unembedded} chunk(s) not embedded with the configured model", highlight=False, soft_wrap=True,
    )
    fix = "ingest reindex" if diff.unembedded else "ingest reindex (or re-run the last ingest command)"
    console.print(f"repair: run `{fix}`", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def reindex(
    db: DbOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Re-embed every chunk, not only those of another model.")] = False,
    index_kind: IndexKindOpt = "flat",
) -> None:
    """Rebuild the vector index from the DB, re-embedding chunks whose vectors come from another model.

    Example: JINRO_EMBEDDER=st:/models/ko-sbert ingest reindex
    """
    try:
        k = _open(db, index_kind)
        with _progress() as progress:
            task = progress.add_task("re-embedding", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            n = reembed(k.factory, k.embedder, full=full, on_progress=step)
        store = k.store(load=False)
        store.clear()
        diff = sync_index(k.factory, store)
    except JinroError as exc:
        _fail(str(exc))
    out.print(f"re-embedded {n} chunk(s); index rebuilt with {len(store)} vectors ({store.kind})", highlight=False,
              soft_wrap=True)
    if diff.unembedded:
        _fail(f"{diff.unembedded} chunk(s) still lack vectors — run `ingest reindex` again", 1)
