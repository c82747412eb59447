"""The one ingest sequence, used by every caller that loads or removes documents.

    ingest_items:  start a run record -> IngestPipeline (`Ingester.run`) -> resolve occupation relations (jobs)
                   -> sync the vector index -> finish the run record (ok | partial | failed)
    remove:        delete the documents -> sync the vector index

Callers: the `ingest` CLI (`ingest jobs|docs|remove`), the knowledge API (`/v1/knowledge/documents`), `jinro serve`
(first-start load of the bundled dictionary) and `jinro eval retrieval --corpus` (the throwaway corpus). They pass
settings as arguments and show progress themselves through `on_progress`.

Relations are resolved after every job run, changed or not: a run killed after its last commit left the links of
its documents undone, and running the same command again must repair them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import time
from datetime import datetime, timedelta, timezone
from typing import Literal

from sqlalchemy import func, update

from db.models import IngestRun
from ingest.indexing import sync_index
from ingest.knowledge import Knowledge
from ingest.occupations import resolve_relations
from ingest.pipeline import IngestReport, Ingester, Item, Limits, remove_documents

Kind = Literal["job", "doc"]
BEAT_EVERY = 2.0  # seconds between heartbeats of a running run
INTERRUPTED_AFTER = 600.0  # a foreground run silent this long is taken for dead
Progress = Callable[[int], None]  # called with the number of items just handled

MAX_PROBLEMS_KEPT = 100  # problem lines stored with a run and returned by the API; the count is always whole


def _start_run(k: Knowledge, command: str) -> int:
    with k.factory() as s:
        run = IngestRun(command=command[:500])
        s.add(run)
        s.commit()
        return run.id


def _finish_run(k: Knowledge, run_id: int, report: IngestReport, status: str) -> None:
    with k.factory() as s:
        run = s.get(IngestRun, run_id)
        # a background run cancelled while it worked (`ingest.background.cancel`) ends `cancelled` in the same write
        run.status = "cancelled" if run.status == "cancelling" and status != "failed" else status
        run.finished_at = datetime.now(timezone.utc)
        run.added, run.updated, run.unchanged, run.removed = report.added, report.updated, report.unchanged, report.removed
        run.errors, run.chunks_embedded, run.chunks_reused = len(report.problems), report.chunks_embedded, report.chunks_reused
        run.flagged = report.flagged
        run.done = report.added + report.updated + report.unchanged + len(report.problems)
        run.message = "\n".join(report.problems[:MAX_PROBLEMS_KEPT])  # run.errors keeps the total
        s.commit()


def ingest_items(knowledge: Knowledge, items: Iterable[Item], *, kind: Kind, command: str, chunk_size: int = 600,
                 chunk_overlap: int = 120, on_progress: Progress | None = None, run_id: int | None = None,
                 problems: Sequence[str] = (), batch_size: int = 64, limits: Limits | None = None) -> IngestReport:
    """Load `items` (documents, (document, occupation) pairs of `ingest.jobs.read_jobs`, or `RecordError`s, which
    become the report's problems) incrementally, and bring the vector index in step. `command` is what the run
    record shows (`ingest status`: last runs); `run_id`: a run already recorded (a background run of
    `ingest.background`) instead of a new one. `problems`: lines found before (files that could not be read),
    reported with the items' own. `batch_size`: documents read before they are embedded and committed together (a
    background run takes small batches, so that progress shows and a cancel takes effect soon). `limits`: chunks
    per document and per run, and redaction (uploads and `ingest docs`).
    Raises `IngestError` / `DatabaseError`; the run is then recorded as failed and
    the same call can simply be repeated (unchanged documents are skipped)."""
    store = knowledge.store()  # an unusable index fails here, before a run is recorded
    run_id = run_id if run_id is not None else _start_run(knowledge, command)
    report = IngestReport()
    beat, done = [time.monotonic()], [0]

    def progress(n: int) -> None:  # the run's `done` and heartbeat (a later process tells a dead run by it)
        done[0] += n
        if time.monotonic() - beat[0] >= BEAT_EVERY:
            beat[0] = time.monotonic()
            with knowledge.factory() as s:
                s.execute(update(IngestRun).where(IngestRun.id == run_id).values(
                    done=done[0], heartbeat_at=datetime.now(timezone.utc)))
                s.commit()
        if on_progress:
            on_progress(n)

    try:
        ingester = Ingester(knowledge.factory, knowledge.embedder, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            kind=kind, batch_size=batch_size, limits=limits)
        report = ingester.run(items, on_progress=progress)
        report.problems[:0] = list(problems)
        if kind == "job":
            with knowledge.factory() as s:
                resolve_relations(s)
                s.commit()
        sync_index(knowledge.factory, store)
    except BaseException:
        _finish_run(knowledge, run_id, report, "failed")
        raise
    _finish_run(knowledge, run_id, report, "partial" if report.problems else "ok")
    return report


def mark_interrupted(knowledge: Knowledge, stale_after: float = INTERRUPTED_AFTER) -> int:
    """Runs of a foreground command (CLI, first start) still `running` but silent for `stale_after` seconds were
    killed with their process: mark them `interrupted` (the commands and `jinro serve` call this when they start).
    Background runs are not touched: a worker takes them over (`ingest.background`). Returns how many."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=stale_after)
    with knowledge.factory() as s:
        done = s.execute(update(IngestRun).where(
            IngestRun.status == "running", IngestRun.params.is_(None),
            func.coalesce(IngestRun.heartbeat_at, IngestRun.started_at) < cutoff,
        ).values(status="interrupted", finished_at=datetime.now(timezone.utc),
                 message="the process running it stopped (killed?) before it finished — run the command again"))
        s.commit()
        return int(done.rowcount or 0)


def remove(knowledge: Knowledge, external_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Remove documents (with their chunks, vectors and, for job documents, the occupation facts) and sync the
    index, also when none was found (that repairs an index left behind by an interrupted removal).
    Returns (removed, not_found) external ids."""
    removed, missing = remove_documents(knowledge.factory, external_ids)
    sync_index(knowledge.factory, knowledge.store())
    return removed, missing
