"""What is in the knowledge DB and index: the numbers behind `ingest status` and the API's knowledge stats."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from db.models import (
    Chunk,
    Document,
    IngestRun,
    Occupation,
    OccupationAlias,
    OccupationCertificate,
    OccupationRelation,
)
from db.vectorstore import FaissStore
from ingest.indexing import diff_index, knowledge_version
from ingest.knowledge import Knowledge


def _index_bytes(store) -> int:
    path = getattr(store, "index_path", None)
    if path is not None:
        return path.stat().st_size if path.exists() else 0
    return int(store.size_bytes()["total"])  # pgvector: table + index


def embedder_status(k: Knowledge, chunks_by_model: dict[Any, int] | None = None) -> dict[str, Any]:
    """The embedder in use (and why it is not the configured one, if so), its shipped vectors, and how many chunks
    still wait for its vectors (embedded with another model, or not at all)."""
    embedder = k.embedder
    table = getattr(embedder, "table", None)
    out: dict[str, Any] = {"configured": k.embedder_spec, "model": embedder.model_id, "dim": embedder.dim,
                           "shipped_vectors": len(table) if table is not None else 0, "notes": list(k.embedder_notes)}
    if chunks_by_model is not None:
        out["chunks_to_embed"] = sum(n for m, n in chunks_by_model.items() if m != embedder.model_id)
    return out


def knowledge_status(k: Knowledge, store: FaissStore) -> dict[str, Any]:
    with k.factory() as s:
        def count(col) -> int:
            return int(s.scalar(select(func.count(col))) or 0)

        by_kind = dict(s.execute(select(Document.kind, func.count(Document.id)).group_by(Document.kind)).all())
        models = dict(
            s.execute(select(Chunk.embedding_model, func.count(Chunk.id)).group_by(Chunk.embedding_model)).all()
        )
        runs = s.scalars(select(IngestRun).order_by(IngestRun.id.desc()).limit(5)).all()
        stats = {
            "database": k.engine.url.render_as_string(hide_password=True),
            "knowledge_version": knowledge_version(k.factory),
            "documents": count(Document.id),
            "documents_by_kind": by_kind,
            "chunks": count(Chunk.id),
            "chunks_flagged": int(s.scalar(select(func.count(Chunk.id)).where(Chunk.flag.is_not(None))) or 0),
            "chunks_by_embedding_model": {str(m): n for m, n in models.items()},
            "occupations": count(Occupation.id),
            "certificates": count(OccupationCertificate.id),
            "aliases": count(OccupationAlias.id),
            "relations": count(OccupationRelation.id),
            "last_runs": [
                {
                    "id": r.id, "command": r.command, "status": r.status,
                    "started_at": r.started_at.isoformat() if r.started_at else None,
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "added": r.added, "updated": r.updated, "unchanged": r.unchanged, "removed": r.removed,
                    "errors": r.errors, "chunks_embedded": r.chunks_embedded,
                }
                for r in runs
            ],
        }
    stats["embedder"] = embedder_status(k, models)
    with k.factory() as s:
        pending = s.scalars(select(IngestRun).where(IngestRun.status.in_(("queued", "running")),
                                                    IngestRun.params.is_not(None)).order_by(IngestRun.id)).all()
        stats["background_jobs"] = [{"id": r.id, "status": r.status, "files": len((r.params or {}).get("files", [])),
                                     "done": r.done} for r in pending]
    diff = diff_index(k.factory, store)
    stats["index"] = {
        "path": str(getattr(store, "index_path", "postgresql:chunk_vectors")),
        "model": store.model_id,
        "kind": store.kind,
        "vectors": len(store),
        "in_sync": diff.ok,
        "missing": int(len(diff.missing)),
        "orphans": int(len(diff.orphans)),
        "bytes": _index_bytes(store),
    }
    return stats
