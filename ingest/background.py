"""Background ingest of uploaded files: a queue in the `ingest_runs` table, worked by one thread per API process.

    enqueue:       spool the files under <spool root>/<run id>/ and record a run `queued` with its parameters
    IngestWorker:  claims a queued run (or one whose worker stopped beating for `STALE_AFTER` seconds: a killed
                   process's run is taken up again, and since ingest is incremental the documents it had committed
                   are skipped), runs the one ingest sequence (`service.ingest_items`) with its progress in
                   `done` and a heartbeat, then deletes the spool
    job_status:    what `GET /v1/knowledge/jobs/{id}` shows

e5-small embeds about 3 passages a second on 2 cores: a large upload takes minutes, so it must not hold the HTTP
request (the client waits as long as it likes, then polls) nor the turns (the embedder runs one passage batch at a
time and queries go between them: `ingest.embedding.E5Embedder`). Runs are claimed with a conditional UPDATE, so
several API processes on one database share the queue and each run is worked once; the spool must be on a disk
they share (the data dir).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import or_, select, update

from db.models import IngestRun
from ingest import service
from ingest.errors import RecordError, SourceError
from ingest.jobs import read_jobs
from ingest.knowledge import Knowledge
from ingest.pipeline import Limits
from ingest.readers import ReaderOptions, read_file

log = logging.getLogger("jinro.ingest")
STALE_AFTER = 60.0  # seconds without a heartbeat (service.BEAT_EVERY) after which a running run is taken over


def _now() -> datetime:
    return datetime.now(timezone.utc)


def safe_name(name: str | None, n: int, taken: set[str]) -> str:
    """An upload's base name, reduced to letters, digits, Hangul, `.-_ `; unique among the upload's files."""
    base = re.sub(r"[^\w.\- 가-힣]", "_", Path((name or "").replace("\\", "/")).name).strip(" .") or f"upload-{n}"
    base = base[:120]
    stem, suffix, k = Path(base).stem, Path(base).suffix, 1
    while base in taken:
        k += 1
        base = f"{stem}-{k}{suffix}"
    taken.add(base)
    return base


def enqueue(k: Knowledge, spool_root: Path, files: Sequence[tuple[str | None, bytes]], *, fmt: str,
            options: ReaderOptions, command: str, chunk_size: int, chunk_overlap: int,
            limits: Limits = Limits()) -> int:
    """Record a queued run for `files` ((name, content) pairs) and spool them; returns the run id."""
    with k.factory() as s:
        run = IngestRun(command=command[:500], status="queued", params={})
        s.add(run)
        s.commit()
        run_id = run.id
    spool = spool_root / str(run_id)
    spool.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    taken: set[str] = set()
    for n, (name, content) in enumerate(files, 1):
        names.append(safe_name(name, n, taken))
        (spool / names[-1]).write_bytes(content)
    params = {"spool": str(spool), "files": names, "format": fmt, "options": dataclasses.asdict(options),
              "chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "limits": dataclasses.asdict(limits)}
    with k.factory() as s:  # only now can a worker claim it: the files are all there
        s.execute(update(IngestRun).where(IngestRun.id == run_id).values(params=params, heartbeat_at=None))
        s.commit()
    return run_id


BATCH_DOCUMENTS = 8  # documents embedded and committed together: a cancel takes effect after the batch in hand
CANCEL_CHECK_EVERY = 0.2  # seconds between looks at a running job's status for a cancel request


class _CancelWatch:
    """Ends the item stream of a run once its status is `cancelling` (looked up at most once a second)."""

    def __init__(self, k: Knowledge, run_id: int) -> None:
        self.k, self.run_id, self.last, self.cancelled = k, run_id, 0.0, False

    def requested(self) -> bool:
        if not self.cancelled and time.monotonic() - self.last >= CANCEL_CHECK_EVERY:
            self.last = time.monotonic()
            with self.k.factory() as s:
                self.cancelled = s.scalar(select(IngestRun.status).where(IngestRun.id == self.run_id)) == "cancelling"
        return self.cancelled


def cancel(k: Knowledge, run_id: int) -> dict[str, Any] | None:
    """Cancel a background run: a queued one ends now (`cancelled`); a running one stops after the batch of
    BATCH_DOCUMENTS in hand (`cancelling`, then `cancelled`). What was ingested before stays and the index stays in
    step with it. A run already ended is left as it is. Returns the job's status, or None when there is no such job."""
    with k.factory() as s:  # conditional updates: a worker may claim the run at this very moment
        run = s.get(IngestRun, run_id)
        if run is None or run.params is None:
            return None
        spool = run.params.get("spool", "")
        queued = s.execute(update(IngestRun).where(IngestRun.id == run_id, IngestRun.status == "queued").values(
            status="cancelled", finished_at=_now(), message="cancelled before it started")).rowcount
        if not queued:
            s.execute(update(IngestRun).where(IngestRun.id == run_id, IngestRun.status == "running")
                      .values(status="cancelling"))
        s.commit()
    if queued:
        shutil.rmtree(spool, ignore_errors=True)
    return job_status(k, run_id)


def _items(paths: list[Path], root: Path, fmt: str, options: ReaderOptions, skipped: list[str],
           watch: _CancelWatch | None = None) -> Iterator[Any]:
    for path in paths:
        if watch is not None and watch.requested():
            return
        shown = path.name
        try:
            if fmt == "jobs":
                for item in read_jobs(path):
                    if watch is not None and watch.requested():
                        return
                    yield item if isinstance(item, RecordError) else (
                        dataclasses.replace(item[0], source_path=f"upload:{shown}"), item[1])
            else:
                for item in read_file(path, options, root=root):
                    if watch is not None and watch.requested():
                        return
                    yield item if isinstance(item, RecordError) else dataclasses.replace(item, source_path=f"upload:{shown}")
        except SourceError as exc:
            skipped.append(str(exc).replace(str(root) + "/", ""))


def claim(k: Knowledge, worker: str, stale_after: float = STALE_AFTER) -> int | None:
    """Take the oldest runnable run: queued with its files spooled, or running with a stale heartbeat."""
    stale = _now() - timedelta(seconds=stale_after)
    with k.factory() as s:
        s.execute(update(IngestRun).where(IngestRun.status == "cancelling", IngestRun.heartbeat_at < stale)
                  .values(status="cancelled", finished_at=_now()))  # its process died while it was being cancelled
        candidates = s.scalars(
            select(IngestRun.id).where(IngestRun.params.is_not(None), or_(
                IngestRun.status == "queued",
                (IngestRun.status == "running") & (IngestRun.heartbeat_at < stale)))
            .order_by(IngestRun.id).limit(5)).all()
        for run_id in candidates:
            took = s.execute(update(IngestRun).where(IngestRun.id == run_id, or_(
                IngestRun.status == "queued", (IngestRun.status == "running") & (IngestRun.heartbeat_at < stale)))
                .values(status="running", heartbeat_at=_now(), message=f"worked by {worker}"))
            s.commit()
            if took.rowcount == 1:
                return run_id
    return None


def work(k: Knowledge, run_id: int, lock: threading.Lock | None = None) -> None:
    """Run a claimed run to its end (ok | partial | failed) and delete its spool."""
    with k.factory() as s:
        run = s.get(IngestRun, run_id)
        params, command = dict(run.params or {}), run.command
    spool = Path(params["spool"])
    paths = [spool / name for name in params["files"] if (spool / name).exists()]
    skipped: list[str] = []
    watch = _CancelWatch(k, run_id)
    items = _items(paths, spool, params["format"], ReaderOptions(**params["options"]), skipped, watch)
    try:
        with lock or threading.Lock():
            service.ingest_items(k, items, kind="job" if params["format"] == "jobs" else "doc", command=command,
                                 chunk_size=params["chunk_size"], chunk_overlap=params["chunk_overlap"],
                                 run_id=run_id, problems=skipped, batch_size=BATCH_DOCUMENTS,
                                 limits=Limits(**params.get("limits", {})))
    except Exception as exc:
        log.exception("background ingest run %s failed", run_id)
        with k.factory() as s:  # a failure before the run was recorded as failed (an unusable index) is recorded too
            s.execute(update(IngestRun).where(IngestRun.id == run_id, IngestRun.status == "running").values(
                status="failed", finished_at=_now(), message=f"{type(exc).__name__}: {exc}"[:2000]))
            s.commit()
    if watch.cancelled:  # the stream ended early: what was ingested stays (its counts say what), the index in step
        with k.factory() as s:
            s.execute(update(IngestRun).where(IngestRun.id == run_id).values(status="cancelled", finished_at=_now()))
            s.commit()
    shutil.rmtree(spool, ignore_errors=True)


def job_status(k: Knowledge, run_id: int) -> dict[str, Any] | None:
    with k.factory() as s:
        run = s.get(IngestRun, run_id)
        if run is None or run.params is None:
            return None
        problems = [line for line in (run.message or "").splitlines() if line and not line.startswith("worked by ")]
        return {"id": run.id, "status": run.status, "files": len(run.params.get("files", [])), "done": run.done,
                "added": run.added, "updated": run.updated, "unchanged": run.unchanged, "errors": run.errors,
                "chunks_embedded": run.chunks_embedded, "chunks_reused": run.chunks_reused, "problems": problems,
                "flagged": run.flagged or 0,
                "started_at": run.started_at, "finished_at": run.finished_at}


class IngestWorker:
    """One thread that works the queue; `wake()` after `enqueue` starts it at once (it also polls)."""

    def __init__(self, k: Knowledge, lock: threading.Lock, *, name: str, poll: float = 5.0) -> None:
        self.k, self.lock, self.name, self.poll = k, lock, name, poll
        self._wake, self._stop = threading.Event(), threading.Event()
        self.finished = threading.Condition()  # notified after every run (the API waits on it)
        self._thread = threading.Thread(target=self._loop, name="jinro-ingest", daemon=True)

    def start(self) -> IngestWorker:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                run_id = claim(self.k, self.name)
                if run_id is not None:
                    work(self.k, run_id, self.lock)
                    with self.finished:
                        self.finished.notify_all()
                    continue
            except Exception:  # the database went away for a moment: poll again
                log.exception("ingest worker: could not claim a run")
            self._wake.wait(self.poll)
            self._wake.clear()
