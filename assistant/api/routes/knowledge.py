"""/v1/knowledge: upload, list and remove documents of the knowledge DB; its statistics (admin keys)."""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from fastapi import APIRouter, File, Form, Path as PathParam, Query, Response, UploadFile, status

from assistant.api import crud
from assistant.api.deps import Admin, PageParams, State, next_offset
from assistant.api.problems import Problem
from assistant.api.schemas import DocumentPage, IngestOut
from assistant.errors import DocumentNotFound
from ingest import service
from ingest.errors import RecordError, SourceError
from ingest.indexing import knowledge_version
from ingest.jobs import read_jobs
from ingest.readers import SUPPORTED_FORMATS, ReaderOptions, read_file
from ingest.status import knowledge_status

router = APIRouter(prefix="/v1/knowledge", tags=["knowledge"])
MAX_FILES = 50
FieldName = Annotated[str, Form(min_length=1, max_length=100)]


def safe_name(name: str | None, n: int, taken: set[str]) -> str:
    """The upload's base name, reduced to letters, digits, Hangul, `.-_ `; unique among this upload's files."""
    base = re.sub(r"[^\w.\- 가-힣]", "_", Path((name or "").replace("\\", "/")).name).strip(" .") or f"upload-{n}"
    base = base[:120]
    stem, suffix, k = Path(base).stem, Path(base).suffix, 1
    while base in taken:
        k += 1
        base = f"{stem}-{k}{suffix}"
    taken.add(base)
    return base


def _items(paths: list[Path], root: Path, fmt: str, options: ReaderOptions, skipped: list[str]) -> Iterator[Any]:
    for path in paths:
        shown = path.name
        try:
            if fmt == "jobs":
                for item in read_jobs(path):
                    yield item if isinstance(item, RecordError) else (
                        dataclasses.replace(item[0], source_path=f"upload:{shown}"), item[1])
            else:
                for item in read_file(path, options, root=root):
                    yield item if isinstance(item, RecordError) else dataclasses.replace(item, source_path=f"upload:{shown}")
        except SourceError as exc:
            skipped.append(str(exc).replace(str(root) + "/", ""))


@router.post("/documents", response_model=IngestOut, responses={
    413: {"description": "the upload is larger than JINRO_MAX_UPLOAD_BYTES"},
    422: {"description": "nothing could be loaded; `problems` says why for each file"}})
def upload(state: State, caller: Admin,
           files: Annotated[list[UploadFile], File(description=f"the documents; {SUPPORTED_FORMATS}")],
           format: Annotated[Literal["docs", "jobs"], Form(description="`docs` (generic documents) or `jobs` "
                                                           "(한국직업사전 JSONL)")] = "docs",
           id_field: FieldName = "id", text_field: FieldName = "text", title_field: FieldName = "title",
           as_of_field: FieldName = "as_of") -> dict:
    """Ingest uploaded files (incremental: unchanged documents are skipped) and update the vector index.
    A file's documents get the id `file:<file name>` (records: their id field)."""
    if len(files) > MAX_FILES:
        raise Problem(422, "too-many-files", f"{len(files)} files in one upload — send at most {MAX_FILES} at a time")
    options = ReaderOptions(id_field=id_field, text_field=text_field, title_field=title_field, as_of_field=as_of_field)
    k, settings, skipped = state.runtime.knowledge, state.settings, []
    with tempfile.TemporaryDirectory(prefix="jinro-upload-") as tmp:
        root, taken, paths = Path(tmp), set(), []
        for n, f in enumerate(files, 1):
            path = root / safe_name(f.filename, n, taken)
            path.write_bytes(f.file.read())
            paths.append(path)
        with state.ingest_lock:
            report = service.ingest_items(
                k, _items(paths, root, format, options, skipped), kind="job" if format == "jobs" else "doc",
                command=f"api upload by {caller.prefix}: {', '.join(p.name for p in paths)}",
                chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    problems = skipped + [p.replace(tmp + "/", "") for p in report.problems]
    out = {"files": len(files), "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
           "chunks_embedded": report.chunks_embedded, "chunks_reused": report.chunks_reused, "problems": problems,
           "knowledge_version": knowledge_version(k.factory)}
    if problems and not (report.added or report.updated or report.unchanged):
        raise Problem(422, "nothing-ingested", f"no document could be loaded: {problems[0]}"
                      + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""), problems=problems)
    return out


@router.get("/documents", response_model=DocumentPage)
def list_documents(state: State, _: Admin, page: PageParams,
                   kind: Annotated[Literal["job", "doc"] | None, Query()] = None,
                   q: Annotated[str | None, Query(max_length=200, description="part of the title")] = None) -> dict:
    """Documents of the knowledge DB, in id order."""
    total, items = crud.list_documents(state.factory, page.limit, page.offset, kind=kind, title_part=q)
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
