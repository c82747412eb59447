"""Knowledge tables: documents and their chunks, occupation facts from the job dictionary, ingest runs.

Chunk ids are the ids in the vector index. The chunk table uses AUTOINCREMENT on SQLite so a deleted chunk's id
is never handed out again (a stale vector could otherwise pass for a new chunk).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, UtcDateTime, utcnow


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="doc")  # "job" | "doc"
    title: Mapped[str] = mapped_column(String(500))
    source_path: Mapped[str] = mapped_column(String(1000))
    content_hash: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[str | None] = mapped_column(String(32))
    meta: Mapped[dict] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # the document's "view": a short text that says what the whole document is about (job documents: the
    # occupation's name and summary), embedded like a chunk; the dense list adds its score to the best chunk's
    view_text: Mapped[str | None] = mapped_column(Text)
    view_embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    view_model: Mapped[str | None] = mapped_column(String(200))

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True, order_by="Chunk.position"
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "position"),
        Index("ix_chunks_content_hash_model", "content_hash", "embedding_model"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    embedding_model: Mapped[str | None] = mapped_column(String(255))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32, L2-normalised
    terms: Mapped[str | None] = mapped_column(Text)  # space-separated morphemes of title + text, for BM25
    flag: Mapped[str | None] = mapped_column(String(200))  # why it reads like an instruction (kept from students)

    document: Mapped[Document] = relationship(back_populates="chunks")


class Occupation(Base):
    """One occupation of the 한국직업사전 with its structured facts."""

    __tablename__ = "occupations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # dJobCd
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    duties: Mapped[str] = mapped_column(Text, default="")
    education_level: Mapped[str | None] = mapped_column(String(100))
    skill_years: Mapped[str | None] = mapped_column(String(100))
    work_strength: Mapped[str | None] = mapped_column(String(100))
    work_place: Mapped[str | None] = mapped_column(String(100))
    work_environment: Mapped[str | None] = mapped_column(String(500))
    keco_code: Mapped[str | None] = mapped_column(String(16))
    keco_name: Mapped[str | None] = mapped_column(String(200))
    ksco_code: Mapped[str | None] = mapped_column(String(16))
    ksco_name: Mapped[str | None] = mapped_column(String(200))
    ksic_code: Mapped[str | None] = mapped_column(String(16))
    ksic_name: Mapped[str | None] = mapped_column(String(200))
    survey_year: Mapped[int | None] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))

    certificates: Mapped[list[OccupationCertificate]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="OccupationCertificate.position"
    )
    aliases: Mapped[list[OccupationAlias]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    relations: Mapped[list[OccupationRelation]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        foreign_keys="OccupationRelation.occupation_id",
        order_by="OccupationRelation.position",
    )


class OccupationCertificate(Base):
    __tablename__ = "occupation_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    occupation_id: Mapped[int] = mapped_column(ForeignKey("occupations.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200), index=True)


class OccupationAlias(Base):
    """Names a student may use for an occupation: its own name and the dictionary's similar names."""

    __tablename__ = "occupation_aliases"

    id: Mapped[int] = mapped_column(primary_key=True)
    occupation_id: Mapped[int] = mapped_column(ForeignKey("occupations.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(200))
    compact: Mapped[str] = mapped_column(String(200), index=True)  # alias without spaces, for matching
    kind: Mapped[str] = mapped_column(String(16))  # "name" | "similar"


class OccupationRelation(Base):
    """A related occupation (connectJob); `related_id` is set when the name is itself in the dictionary."""

    __tablename__ = "occupation_relations"

    id: Mapped[int] = mapped_column(primary_key=True)
    occupation_id: Mapped[int] = mapped_column(ForeignKey("occupations.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    related_name: Mapped[str] = mapped_column(String(300))
    related_id: Mapped[int | None] = mapped_column(ForeignKey("occupations.id", ondelete="SET NULL"))


class IngestRun(Base):
    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    command: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="running")  # queued | running | ok | partial | failed
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    chunks_embedded: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    # background runs (uploads through the API, `ingest.background`): what to ingest and how far it got
    params: Mapped[dict | None] = mapped_column(JSON)
    done: Mapped[int] = mapped_column(Integer, default=0)  # items (documents or records) handled so far
    chunks_reused: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # a worker that stops beating lost the run
    flagged: Mapped[int] = mapped_column(Integer, default=0)  # chunks stored with a flag (ingest.screening)


class KnowledgeState(Base):
    """A single row whose `version` goes up in every transaction that changes documents or chunks.

    Readers (the retriever) compare one integer to know when to refresh their in-memory indexes.
    """

    __tablename__ = "knowledge_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
