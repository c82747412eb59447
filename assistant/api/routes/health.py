"""/healthz (the process is up), /readyz (DB reachable, index loaded), /metrics (Prometheus text)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from assistant.api import crud
from assistant.api.deps import State
from assistant.api.schemas import Health, Ready

router = APIRouter(tags=["operations"])

try:
    VERSION = version("jinro")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0+unknown"


@router.get("/healthz", response_model=Health)
def healthz() -> dict:
    """The process is up (no dependency is checked)."""
    return {"status": "ok", "pid": os.getpid(), "version": VERSION}


@router.get("/readyz", response_model=Ready, responses={503: {"description": "not ready: `checks` says what is not"}})
def readyz(state: State) -> Response:
    """Ready to answer: the database is reachable and the knowledge index is loaded."""
    checks: dict[str, str] = {}
    try:
        crud.database_reachable(state.runtime.knowledge.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if state.warm_error:
        checks["index"] = f"failed to load: {state.warm_error}"
    elif not state.ready.is_set():
        checks["index"] = "loading"
    else:
        try:
            empty = state.runtime.retriever.corpus.current().empty
            checks["index"] = "empty: load the knowledge DB (`ingest jobs data/job_dictionary`)" if empty else "ok"
        except Exception as exc:
            checks["index"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    k = state.runtime.knowledge
    embedder = {"configured": k.embedder_spec, "model": state.runtime.retriever.embedder.model_id,
                "notes": list(k.embedder_notes)}  # e.g. e5-small's engine could not load: USE v3 in its place
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks, "embedder": embedder,
                         "safety": state.runtime.safety,
                         "generator": {"name": state.runtime.counselor.generator.name,
                                       "understanding": "llm" if state.runtime.counselor.reader else "classifier"}},
                        status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(state: State) -> Response:
    """Prometheus metrics: requests by route and status, latencies, turns, crisis flags, fact-guard replacements."""
    body, content_type = state.metrics.exposition()
    return Response(body, media_type=content_type)
