"""Incremental, idempotent loading of documents into the DB: chunk, embed (only what changed), store.

Content hashes decide: a document whose hash is unchanged is not touched; a changed one has its chunks replaced
in the same transaction that records the new hash, so a run killed at any moment leaves either the old or the
new version of each document, never a mix. Chunk embeddings are reused by chunk content hash, so editing one
paragraph re-embeds one chunk. The vector index is synced from the DB afterwards (`ingest.indexing`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Chunk, Document, KnowledgeState, Occupation
from db.settings import Settings
from ingest.chunking import ChunkText, chunk_context, chunk_text
from ingest.documents import SourceDocument
from ingest.embedding import Embedder
from ingest.errors import EmbeddingModelMismatch, RecordError
from ingest.occupation_text import view_text
from ingest.occupations import upsert_occupation
from ingest.jobs import OccupationRecord
from ingest.lexical import morphemes_many
from ingest.screening import instruction_flag, redact_document

Item = SourceDocument | tuple[SourceDocument, OccupationRecord] | RecordError


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    views_embedded: int = 0  # document views (job documents: name and summary)
    flagged: int = 0  # chunks stored with an instruction-like flag (kept from students, listed for reviewers)
    problems: list[str] = field(default_factory=list)  # one line each: "file:line: reason"

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass
class _Pending:
    doc: SourceDocument
    occupation: OccupationRecord | None
    existing_id: int | None
    chunks: list[ChunkText] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    terms: list[list[str]] = field(default_factory=list)
    view: str | None = None  # job documents: name and summary (ingest.occupation_text.view_text)
    view_vector: np.ndarray | None = None


@dataclass(frozen=True)
class Limits:
    """What a run may store (uploads and `ingest docs`; the bundled dictionary loads without limits).

    document_chunks: most chunks one document may become; run_chunks: most chunks of new or changed documents in
    one run (what must be embedded; unchanged documents cost nothing). None: no limit. redact: replace personal data
    in titles and texts first (`ingest.screening.redact_document`).
    """

    document_chunks: int | None = None
    run_chunks: int | None = None
    redact: bool = False

    def check(self, doc: SourceDocument, chunks: int, run_so_far: int) -> str | None:
        """The problem line when `doc` (`chunks` long, after `run_so_far` new chunks) passes a limit."""
        if self.document_chunks and chunks > self.document_chunks:
            return (f"{doc.source_path}: document {doc.external_id!r} makes {chunks:,} chunks, more than the limit of "
                    f"{self.document_chunks:,} per document (JINRO_MAX_DOCUMENT_CHUNKS); skipped — split it or raise "
                    "the limit")
        if self.run_chunks and run_so_far + chunks > self.run_chunks:
            return (f"{doc.source_path}: document {doc.external_id!r} not loaded: the run reached its limit of "
                    f"{self.run_chunks:,} new chunks (JINRO_MAX_UPLOAD_CHUNKS) — send the rest in another upload or "
                    "raise the limit")
        return None


def upload_limits(settings: Settings) -> Limits:
    """The limits of uploads and `ingest docs` in a deployment's settings (0 turns a limit off)."""
    return Limits(settings.max_document_chunks or None, settings.max_upload_chunks or None, settings.redact_uploads)


def bump_version(session: Session) -> None:
    session.execute(update(KnowledgeState).where(KnowledgeState.id == 1).values(version=KnowledgeState.version + 1))


def check_embedding_model(factory: sessionmaker[Session], model_id: str) -> None:
    with factory() as s:
        models = set(s.scalars(select(Chunk.embedding_model).distinct())) - {None}
    other = models - {model_id}
    if other:
        raise EmbeddingModelMismatch(
            f"the knowledge DB was embedded with {', '.join(sorted(other))}, but the configured embedder is "
            f"{model_id} — run `ingest reindex` to re-embed it with {model_id} (or set JINRO_EMBEDDER back)"
        )


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Ingester:
    def __init__(
        self,
        factory: sessionmaker[Session],
        embedder: Embedder,
        *,
        chunk_size: int = 600,
        chunk_overlap: int = 120,
        batch_size: int = 64,
        kind: str = "doc",
        limits: Limits | None = None,
    ) -> None:
        self.factory, self.embedder = factory, embedder
        self.chunk_size, self.chunk_overlap, self.batch_size, self.kind = chunk_size, chunk_overlap, batch_size, kind
        self.limits = limits or Limits()
        self._new_chunks = 0  # chunks of new or changed documents in this run (Limits.run_chunks)

    def run(self, items: Iterable[Item], on_progress: Callable[[int], None] | None = None) -> IngestReport:
        check_embedding_model(self.factory, self.embedder.model_id)
        report = IngestReport()
        seen: dict[str, str] = {}
        for batch in _batches(items, self.batch_size):
            docs: list[tuple[SourceDocument, OccupationRecord | None]] = []
            for item in batch:
                if isinstance(item, RecordError):
                    report.problems.append(str(item))
                    continue
                doc, occ = item if isinstance(item, tuple) else (item, None)
                if doc.external_id in seen:
                    report.problems.append(
                        f"{doc.source_path}: duplicate document {doc.external_id!r} (already read from "
                        f"{seen[doc.external_id]}); kept the first"
                    )
                    continue
                if not doc.text.strip():
                    report.problems.append(f"{doc.source_path}: document {doc.external_id!r} has an empty text; skipped")
                    continue
                if self.limits.redact:
                    doc = redact_document(doc)
                seen[doc.external_id] = doc.source_path
                docs.append((doc, occ))
            self._ingest_batch(docs, report)
            if on_progress:
                on_progress(len(batch))
        return report

    def _ingest_batch(self, docs: Sequence[tuple[SourceDocument, OccupationRecord | None]], report: IngestReport) -> None:
        if not docs:
            return
        with self.factory() as s:
            existing = {
                ext: (doc_id, h)
                for doc_id, ext, h in s.execute(
                    select(Document.id, Document.external_id, Document.content_hash).where(
                        Document.external_id.in_([d.external_id for d, _ in docs])
                    )
                )
            }
            pending: list[_Pending] = []
            for doc, occ in docs:
                old = existing.get(doc.external_id)
                if old and old[1] == self._hash(doc):
                    report.unchanged += 1
                    continue
                p = _Pending(doc, occ, old[0] if old else None)
                p.chunks = chunk_text(doc.text, self.chunk_size, self.chunk_overlap)
                problem = self.limits.check(doc, len(p.chunks), self._new_chunks)
                if problem:
                    report.problems.append(problem)
                    continue
                self._new_chunks += len(p.chunks)
                p.view = view_text(occ.fields) if occ is not None else None
                pending.append(p)
            if not pending:
                return
            self._embed(s, pending, report)
            for p in pending:
                p.terms = morphemes_many([chunk_context(p.doc.title, c.text) for c in p.chunks])
            for p in pending:
                report.flagged += self._write(s, p)
                if p.existing_id is None:
                    report.added += 1
                else:
                    report.updated += 1
            bump_version(s)
            s.commit()

    def _embed(self, s: Session, pending: list[_Pending], report: IngestReport) -> None:
        """Reuse stored vectors of identical chunks (same text and title); embed the rest in one call."""
        keys = {self._key(p, c) for p in pending for c in p.chunks}
        reuse: dict[str, bytes] = {}
        key_list = list(keys)
        for i in range(0, len(key_list), 500):
            rows = s.execute(
                select(Chunk.content_hash, Chunk.embedding).where(
                    Chunk.content_hash.in_(key_list[i : i + 500]),
                    Chunk.embedding_model == self.embedder.model_id,
                    Chunk.embedding.is_not(None),
                )
            )
            reuse.update({h: e for h, e in rows})
        todo: list[tuple[_Pending, int, str]] = []
        for p in pending:
            p.vectors = [None] * len(p.chunks)
            for i, c in enumerate(p.chunks):
                blob = reuse.get(self._key(p, c))
                if blob is not None:
                    p.vectors[i] = np.frombuffer(blob, dtype=np.float32)
                    report.chunks_reused += 1
                else:
                    todo.append((p, i, chunk_context(p.doc.title, c.text)))
        views = [p for p in pending if p.view]
        if todo or views:
            vectors = self.embedder.embed([t for _, _, t in todo] + [p.view for p in views])
            for (p, i, _), v in zip(todo, vectors):
                p.vectors[i] = v
            for p, v in zip(views, vectors[len(todo):]):
                p.view_vector = np.asarray(v, dtype=np.float32)
            report.chunks_embedded += len(todo)
            report.views_embedded += len(views)

    def _hash(self, doc: SourceDocument) -> str:
        """The stored hash covers the chunking settings too: changing them re-chunks (vectors are reused); and the
        version of what is derived beside the chunks (`views1`: document views), so loading the same source again
        after an upgrade adds what is new."""
        key = f"{doc.content_hash}:{self.chunk_size}:{self.chunk_overlap}:views1"
        return hashlib.sha256(key.encode()).hexdigest()

    @staticmethod
    def _key(p: _Pending, c: ChunkText) -> str:
        """A chunk's content hash covers its title too, since the title is embedded with it."""
        return ChunkText(c.position, chunk_context(p.doc.title, c.text)).content_hash

    def _view_values(self, p: _Pending) -> dict:
        if p.view is None or p.view_vector is None:
            return {"view_text": None, "view_embedding": None, "view_model": None}
        return {"view_text": p.view, "view_embedding": p.view_vector.tobytes(), "view_model": self.embedder.model_id}

    def _write(self, s: Session, p: _Pending) -> int:
        """Store the document and its chunks; returns how many chunks were flagged."""
        d = p.doc
        if p.existing_id is not None:
            s.execute(delete(Chunk).where(Chunk.document_id == p.existing_id))
            s.execute(
                update(Document).where(Document.id == p.existing_id).values(
                    title=d.title, source_path=d.source_path, content_hash=self._hash(d), as_of=d.as_of,
                    meta=d.metadata, kind=self.kind, **self._view_values(p),
                )
            )
            doc_id = p.existing_id
        else:
            row = Document(external_id=d.external_id, kind=self.kind, title=d.title, source_path=d.source_path,
                           content_hash=self._hash(d), as_of=d.as_of, meta=d.metadata, **self._view_values(p))
            s.add(row)
            s.flush()
            doc_id = row.id
        flags = [instruction_flag(c.text) for c in p.chunks]
        s.add_all(
            Chunk(document_id=doc_id, position=c.position, text=c.text, content_hash=self._key(p, c),
                  embedding_model=self.embedder.model_id, embedding=np.asarray(v, dtype=np.float32).tobytes(),
                  terms=" ".join(t), flag=flag)
            for c, v, t, flag in zip(p.chunks, p.vectors, p.terms, flags)
        )
        if p.occupation is not None:
            upsert_occupation(s, p.occupation, doc_id)
        return sum(f is not None for f in flags)


def remove_documents(factory: sessionmaker[Session], external_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Delete documents (their chunks and, for job documents, the occupation). Returns (removed, not_found)."""
    with factory() as s:
        rows = dict(s.execute(select(Document.external_id, Document.id).where(Document.external_id.in_(external_ids))).all())
        if rows:
            s.execute(delete(Occupation).where(Occupation.document_id.in_(rows.values())))
            s.execute(delete(Document).where(Document.id.in_(rows.values())))
            bump_version(s)
            s.commit()
    return [e for e in external_ids if e in rows], [e for e in external_ids if e not in rows]
