"""`jinro serve` (the REST API under uvicorn) and `jinro keys create|list|revoke` (its API keys)."""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from assistant.api import crud
from assistant.api.security import ROLES
from db.errors import JinroError
from db.models import Document
from db.settings import Settings
from ingest import service
from ingest.indexing import sync_index
from ingest.jobs import read_jobs
from ingest.knowledge import Knowledge, open_configured

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "job_dictionary"
out = Console()
err = Console(stderr=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.\n\nExample: jinro keys create --role client --name web",
                       no_args_is_help=True, pretty_exceptions_enable=False)
DbOpt = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: JINRO_DB_URL or the SQLite file).")]


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _open(db: str | None) -> Knowledge:
    settings = Settings()
    try:
        return open_configured(settings, db)
    except JinroError as exc:
        _fail(str(exc))
        raise  # unreachable


def ensure_knowledge(k: Knowledge, source: Path, settings: Settings) -> int:
    """Ingest `source` (the bundled job dictionary) when the knowledge DB has no document yet; returns the
    number of documents added. Also brings the vector index in step with the DB, and marks the runs of killed
    processes `interrupted`."""
    service.mark_interrupted(k)
    with k.factory() as s:
        documents = s.scalar(select(func.count(Document.id))) or 0
    if documents:
        sync_index(k.factory, k.store())
        return 0
    files = sorted(source.glob("*.jsonl")) if source.is_dir() else [source]
    total = sum(1 for f in files if f.exists() for line in f.open(encoding="utf-8-sig") if line.strip())
    err.print(f"the knowledge DB is empty: loading {escape(str(source))} ({total} records, once)", highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("occupations", total=total)
        report = service.ingest_items(k, read_jobs(source), kind="job", command=f"jinro serve: first start, {source}",
                                      chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap,
                                      on_progress=lambda n: progress.advance(task, n))
    for line in report.problems[:20]:
        err.print(f"[yellow]{escape(line)}[/yellow]", highlight=False, soft_wrap=True)
    shipped = getattr(k.embedder, "hits", 0)  # ingest.shipped.ShippedEmbedder: vectors taken from data/vectors
    vectors = report.chunks_embedded + report.views_embedded
    err.print(f"loaded {report.added} documents ({report.chunks_embedded} chunks, {report.views_embedded} document "
              f"views: {shipped} vectors shipped, {vectors - shipped} embedded by {k.embedder.model_id}); "
              f"{len(report.problems)} problem(s)", highlight=False)
    for note in k.embedder_notes:
        err.print(f"[yellow]{escape(note)}[/yellow]", highlight=False, soft_wrap=True)
    return report.added


def log_config(level: str) -> dict:
    """uvicorn's logging, plus the `jinro` loggers, with API keys scrubbed from every line."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["scrub_keys"] = {"()": "assistant.api.security.KeyScrubber"}
    for handler in cfg["handlers"].values():
        handler.setdefault("filters", []).append("scrub_keys")
    cfg["loggers"]["jinro"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


class TcpNoDelayConfig(uvicorn.Config):
    """With --workers, uvicorn binds the listening socket itself with `proto` 0, so asyncio never sets TCP_NODELAY on
    the accepted connections and every keep-alive request waits ~40 ms for a delayed ACK (Kludex/uvicorn#3149).
    This socket says IPPROTO_TCP, which the workers' accepted sockets inherit. (Module level: it is pickled into
    the worker processes.)"""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
            sock.set_inheritable(True)
        return sock


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (they share the DB and Redis).")] = 1,
    db: DbOpt = None,
    knowledge: Annotated[Path, typer.Option(help="Job dictionary loaded on first start, when the DB is empty.")] = BUNDLED,
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="Start even with an empty knowledge DB.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    worker_healthcheck: Annotated[int, typer.Option(min=1, help="Seconds a busy worker may take to answer the "
                                                    "supervisor's ping before it is restarted (with --workers).")] = 60,
) -> None:
    """Serve the REST API (OpenAPI at /openapi.json, docs at /docs).

    Example: jinro serve --host 0.0.0.0 --port 8000 --workers 4
    """
    settings = Settings()
    url = settings.database_url(db)
    os.environ["JINRO_DB_URL"] = url  # the workers read the same settings from the environment
    k = _open(url)
    try:
        if not no_ingest:
            ensure_knowledge(k, knowledge, settings)
    except JinroError as exc:
        _fail(str(exc))
    finally:
        k.engine.dispose()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="jinro-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, True)
    shown = k.engine.url.render_as_string(hide_password=True)
    out.print(f"jinro API listening on http://{host}:{port} (docs: http://{host}:{port}/docs) — "
              f"{workers} worker(s), database {shown}, generator {settings.generator}", highlight=False, soft_wrap=True)
    config = TcpNoDelayConfig("assistant.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                              log_config=log_config(log_level), log_level=log_level.lower(),
                              timeout_graceful_shutdown=10, timeout_worker_healthcheck=worker_healthcheck,
                              timeout_keep_alive=75)  # outlive clients' and load balancers' idle keep-alive (60 s)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:  # the app could not start (its error is logged above)
            raise typer.Exit(3)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="client (chat), reviewer (+ review queue) or admin (+ knowledge, all).")],
    name: Annotated[Optional[str], typer.Option(help="A label: who or what uses the key.")] = None,
    db: DbOpt = None,
) -> None:
    """Create an API key; the key itself is printed once, alone on the last line.

    Example: KEY=$(jinro keys create --role client --name web | tail -n1)
    """
    if role not in ROLES:
        _fail(f"unknown role {role!r} — use one of {', '.join(ROLES)}")
    k = _open(db)
    row, token = crud.create_key(k.factory, role, name or role)
    err.print(f"created {role} key {row.id} ({escape(row.name)}, {row.prefix}…) — store it now: it is not shown again",
              highlight=False)
    print(token)


@keys_app.command("list")
def keys_list(
    db: DbOpt = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List API keys (prefixes only: the keys themselves are not stored).

    Example: jinro keys list --all
    """
    k = _open(db)
    rows = crud.list_keys(k.factory, include_revoked=all_keys)
    data = [{"id": r.id, "name": r.name, "role": r.role, "prefix": r.prefix, "created_at": r.created_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("id", "name", "role", "prefix", "created", "revoked")
    for d in data:
        table.add_row(str(d["id"]), escape(d["name"]), d["role"], d["prefix"] + "…", d["created_at"][:19],
                      (d["revoked_at"] or "")[:19])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (from `jinro keys list`) or its prefix / the key.")],
    db: DbOpt = None,
) -> None:
    """Revoke an API key: requests with it get 401 from then on.

    Example: jinro keys revoke 3
    """
    k = _open(db)
    rows = crud.revoke_key(k.factory, key)
    if not rows:
        _fail(f"no active key {key!r} — see `jinro keys list`")
    for r in rows:
        out.print(f"revoked key {r.id} ({escape(r.name)}, {r.prefix}…)", highlight=False)
