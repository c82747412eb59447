"""/v1/knowledge: upload, list and remove documents of the knowledge DB; its statistics (admin keys)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path as PathParam, Query, Response, UploadFile, status
from fastapi.responses import JSONResponse

from assistant.api import crud
from assistant.api.deps import Admin, PageParams, Reviewer, State, next_offset
from assistant.api.problems import Problem
from assistant.api.schemas import DocumentPage, FlaggedPage, IngestJob, IngestOut
from assistant.errors import DocumentNotFound, JobNotFound
from ingest import background, service
from ingest.indexing import knowledge_version
from ingest.pipeline import upload_limits
from ingest.readers import SUPPORTED_FORMATS, ReaderOptions
from ingest.status import knowledge_status

router = APIRouter(prefix="/v1/knowledge", tags=["knowledge"])
MAX_FILES = 50
FieldName = Annotated[str, Form(min_length=1, max_length=100)]


@router.post("/documents", response_model=IngestOut, responses={
    202: {"model": IngestJob, "description": "still running after `wait` seconds: poll `GET /v1/knowledge/jobs/{id}`"},
    413: {"description": "the upload is larger than JINRO_MAX_UPLOAD_BYTES"},
    422: {"description": "nothing could be loaded; `problems` says why for each file"}})
def upload(state: State, caller: Admin, response: Response,
           files: Annotated[list[UploadFile], File(description=f"the documents; {SUPPORTED_FORMATS}")],
           format: Annotated[Literal["docs", "jobs"], Form(description="`docs` (generic documents) or `jobs` "
                                                           "(한국직업사전 JSONL)")] = "docs",
           id_field: FieldName = "id", text_field: FieldName = "text", title_field: FieldName = "title",
           as_of_field: FieldName = "as_of",
           wait: Annotated[float, Query(ge=0, le=120, description="seconds to wait for the result before answering "
                                        "202 with the job to poll")] = 20.0) -> Any:
    """Ingest uploaded files in the background (incremental: unchanged documents are skipped) and update the vector
    index. Answers with the counts when the job ends within `wait` seconds, otherwise 202 and the job (`Location`:
    `/v1/knowledge/jobs/{id}`), which goes on after the request and after a restart of the server.
    A file's documents get the id `file:<file name>` (records: their id field)."""
    if len(files) > MAX_FILES:
        raise Problem(422, "too-many-files", f"{len(files)} files in one upload — send at most {MAX_FILES} at a time")
    k, settings = state.runtime.knowledge, state.settings
    options = ReaderOptions(id_field=id_field, text_field=text_field, title_field=title_field, as_of_field=as_of_field,
                            max_chars=settings.max_document_chars)
    run_id = background.enqueue(
        k, settings.data_dir / "uploads", [(f.filename, f.file.read()) for f in files], fmt=format, options=options,
        command=f"api upload by {caller.prefix}: {', '.join(f.filename or '?' for f in files)}",
        chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap, limits=upload_limits(settings))
    worker = state.ingest_worker
    job = background.job_status(k, run_id)
    if worker is not None:
        worker.wake()
        deadline = time.monotonic() + wait
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            with worker.finished:  # woken when a run ends; the job is read outside the lock
                worker.finished.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            job = background.job_status(k, run_id)
    response.headers["Location"] = f"/v1/knowledge/jobs/{run_id}"
    if job["status"] in ("queued", "running", "cancelling", "cancelled"):
        return JSONResponse(_job_json(job), status_code=202, headers={"Location": f"/v1/knowledge/jobs/{run_id}"})
    if job["status"] == "failed":
        raise Problem(500, "ingest-failed", f"the upload could not be ingested: {'; '.join(job['problems'][:3])} — "
                      "see `ingest status` and the server log", job=run_id)
    problems = job["problems"]
    out = {"files": len(files), "added": job["added"], "updated": job["updated"], "unchanged": job["unchanged"],
           "chunks_embedded": job["chunks_embedded"], "chunks_reused": job["chunks_reused"], "problems": problems,
           "problems_total": max(job["errors"], len(problems)), "flagged": job["flagged"],
           "knowledge_version": knowledge_version(k.factory), "job": run_id}
    if problems and not (job["added"] or job["updated"] or job["unchanged"]):
        raise Problem(422, "nothing-ingested", f"no document could be loaded: {problems[0]}"
                      + (f" (and {out['problems_total'] - 1} more problems)" if out["problems_total"] > 1 else ""),
                      problems=problems, problems_total=out["problems_total"])
    return out


def _job_json(job: dict) -> dict:
    return {**job, "started_at": job["started_at"].isoformat() if job["started_at"] else None,
            "finished_at": job["finished_at"].isoformat() if job["finished_at"] else None}


@router.get("/jobs/{job_id}", response_model=IngestJob, responses={404: {"description": "no such job"}})
def get_job(job_id: int, state: State, _: Admin) -> dict:
    """A background upload: `queued`, `running` (with `done`: documents handled so far), then `ok`, `partial`
    (some records not loaded: `problems`) or `failed`."""
    job = background.job_status(state.runtime.knowledge, job_id)
    if job is None:
        raise JobNotFound(f"no ingest job {job_id} — uploads answer with their job id")
    return job


@router.delete("/jobs/{job_id}", response_model=IngestJob, responses={404: {"description": "no such job"}})
def cancel_job(job_id: int, state: State, _: Admin) -> dict:
    """Cancel a background upload: a queued job ends at once (`cancelled`); a running one stops after the batch in hand
    (up to 8 documents: `cancelling`, then `cancelled`), keeping what it had ingested (its counts say what) with the index in step.
    A job that has ended is returned as it is."""
    job = background.cancel(state.runtime.knowledge, job_id)
    if job is None:
        raise JobNotFound(f"no ingest job {job_id} — uploads answer with their job id")
    return job


@router.get("/documents", response_model=DocumentPage)
def list_documents(state: State, _: Admin, page: PageParams,
                   kind: Annotated[Literal["job", "doc"] | None, Query()] = None,
                   q: Annotated[str | None, Query(max_length=200, description="part of the title")] = None) -> dict:
    """Documents of the knowledge DB, in id order."""
    total, items = crud.list_documents(state.factory, page.limit, page.offset, kind=kind, title_part=q)
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset,
            "next_offset": next_offset(page, total)}


@router.get("/flagged", response_model=FlaggedPage)
def list_flagged(state: State, _: Reviewer, page: PageParams) -> dict:
    """Passages of uploaded documents flagged at ingest because they read like instructions to a model or ask for
    credentials ("이전 지시를 무시하고 …", "system:", "비밀번호를 알려주세요"). Retrieval leaves them out, so students
    never see them; remove the document (DELETE /v1/knowledge/documents/{id}) or upload a corrected one."""
    total, items = crud.list_flagged(state.factory, page.limit, page.offset)
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset,
            "next_offset": next_offset(page, total)}


@router.delete("/documents/{external_id:path}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "no such document"}})
def delete_document(external_id: Annotated[str, PathParam(max_length=255)], state: State, _: Admin) -> Response:
    """Remove a document with its chunks, vectors and (job documents) occupation facts."""
    k = state.runtime.knowledge
    with state.ingest_lock:
        removed, _missing = service.remove(k, [external_id])
    if not removed:
        raise DocumentNotFound(f"no document {external_id!r} — list them with GET /v1/knowledge/documents")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/stats")
def stats(state: State, _: Admin) -> dict[str, Any]:
    """What the knowledge DB and its vector index hold (the numbers of `ingest status`)."""
    k = state.runtime.knowledge
    return knowledge_status(k, k.store())
