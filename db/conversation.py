"""Conversation tables: sessions with their memory, messages, feedback, counselor reviews, and API keys.

Text stored here is redacted of personal data by the caller before it is written (minors' conversations).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UtcDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # client | reviewer | admin
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # first characters, to find the row
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ChatSession(Base):
    """One student's conversation and its memory: profile slots, rolling summary, facts in play."""

    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)  # api key id, or "local" for the CLI
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    turns: Mapped[int] = mapped_column(Integer, default=0)  # student turns so far
    careful: Mapped[bool] = mapped_column(Boolean, default=False)  # set after a crisis turn
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)  # needs a counselor now
    profile: Mapped[dict] = mapped_column(default=dict)  # slot -> [{"value", "turn"}]
    summary: Mapped[str] = mapped_column(Text, default="")
    summary_upto: Mapped[int] = mapped_column(Integer, default=0)  # messages with seq <= this are summarised
    facts: Mapped[list] = mapped_column(default=list)  # occupations in play, most recent last
    shown: Mapped[list] = mapped_column(default=list)  # occupations the last answer listed, in its order
    version: Mapped[int] = mapped_column(Integer, default=0)  # optimistic lock for concurrent turns


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # student | counselor
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    generator: Mapped[str | None] = mapped_column(String(100))
    citations: Mapped[list] = mapped_column(default=list)
    facts_used: Mapped[list] = mapped_column(default=list)
    passages_used: Mapped[list] = mapped_column(default=list)
    safety: Mapped[dict] = mapped_column(default=dict)
    timings: Mapped[dict] = mapped_column(default=dict)
    retrieval_confidence: Mapped[float | None] = mapped_column(Float)
    fact_guard: Mapped[str | None] = mapped_column(String(32))  # None | "passed" | "replaced"


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int] = mapped_column(Integer)  # +1 | -1
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Review(Base):
    """A counselor answer queued for human review, and the reviewer's decision."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_status_priority", "status", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    reason: Mapped[str] = mapped_column(String(32))  # crisis | concern | negative_feedback | fact_guard | low_confidence | sample
    priority: Mapped[int] = mapped_column(Integer)  # lower first: crisis 0
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | edited | rejected
    corrected_text: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
