"""Database work of the API that is not the counselor's: API keys, feedback, the review queue and its exports,
the knowledge DB's document list, the readiness ping.

Functions take a session factory and plain values and return plain dicts or rows; they know nothing of HTTP and
raise domain errors (`assistant.errors`: `MessageNotFound`, `ReviewNotFound`, `NotAnAnswer`, ...) for what the
caller got wrong; `assistant.api.problems` maps those to problem documents. Routes run no SQL: they call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from assistant.api.security import ROLES, Caller, hash_key, key_prefix, looks_like_key, new_key
from assistant.counselor.profile import SLOT_LABELS
from assistant.counselor.prompt import Passage
from assistant.counselor.review import CRISIS, NEGATIVE_FEEDBACK, PreferencePair, ReviewExport, ReviewMessage
from assistant.errors import MessageNotFound, NotAnAnswer, ReviewNotFound
from ingest.redaction import redact
from db.conversation import ApiKey, ChatSession, Feedback, Message, Review
from db.retry import retrying
from db.models import Chunk, Document

Factory = sessionmaker[Session]


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------------------------------------ keys

def create_key(factory: Factory, role: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key: returns its row and the token, which is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    token = new_key()
    row = ApiKey(name=name or role, role=role, prefix=key_prefix(token), key_hash=hash_key(token))
    with factory() as s:
        s.add(row)
        s.commit()
    return row, token


def authenticate(factory: Factory, token: str) -> Caller | None:
    if not looks_like_key(token):
        return None
    with factory() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token)))
    if row is None or row.revoked_at is not None:
        return None
    return Caller(row.id, row.name, row.role, row.prefix)


def list_keys(factory: Factory, include_revoked: bool = False) -> list[ApiKey]:
    with factory() as s:
        q = select(ApiKey).order_by(ApiKey.id)
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        return list(s.scalars(q))


def revoke_key(factory: Factory, ident: str) -> list[ApiKey]:
    """Revoke by id, by the key itself, or by its prefix (as `jinro keys list` shows it); returns the keys revoked."""
    with factory() as s:
        if ident.isdigit():
            rows = list(s.scalars(select(ApiKey).where(ApiKey.id == int(ident))))
        elif looks_like_key(ident):
            rows = list(s.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(ident))))
        else:
            rows = list(s.scalars(select(ApiKey).where(ApiKey.prefix == ident.rstrip("…"))))
        rows = [r for r in rows if r.revoked_at is None]
        for r in rows:
            r.revoked_at = _now()
        s.commit()
        return rows


# ------------------------------------------------------------------------------------------------ views

def message_json(m: Message) -> dict[str, Any]:
    return {"id": m.id, "seq": m.seq, "role": m.role, "text": m.text, "created_at": m.created_at,
            "citations": m.citations or [], "facts_used": m.facts_used or [], "safety": m.safety or {},
            "generator": m.generator, "retrieval_confidence": m.retrieval_confidence, "fact_guard": m.fact_guard}


def session_json(row: ChatSession, expires_at: datetime | None = None) -> dict[str, Any]:
    facts = [{"external_id": f.get("external_id"), "name": f.get("name", ""), "education": f.get("education_level"),
              "certificates": list(f.get("certificates") or []), "turn": f.get("turn")} for f in row.facts or []]
    return {"id": row.id, "created_at": row.created_at, "last_active_at": row.last_active_at, "turns": row.turns,
            "careful": row.careful, "urgent": row.urgent,
            "profile": {slot: [v["value"] for v in values] for slot, values in (row.profile or {}).items()},
            "summary": row.summary or "", "facts": facts, "expires_at": expires_at}


# ------------------------------------------------------------------------------------------------ feedback

def _owned_message(s: Session, message_id: int, scope: str | None) -> Message:
    msg = s.get(Message, message_id)
    owner = s.scalar(select(ChatSession.owner).where(ChatSession.id == msg.session_id)) if msg else None
    if msg is None or owner is None or (scope is not None and owner != scope):
        raise MessageNotFound(f"no message {message_id} in your sessions — use a message_id returned by "
                              "POST /v1/sessions/{session_id}/messages")
    return msg


def add_feedback(factory: Factory, message_id: int, scope: str | None, rating: str, comment: str) -> dict[str, Any]:
    """Store feedback; a thumbs-down queues the answer for review unless it is queued with a higher priority."""
    # two thumbs-down at once both create the review: the second one fails on the unique message_id and retries
    for attempt in retrying(IntegrityError, attempts=3):
        with attempt:
            with factory() as s:
                msg = _owned_message(s, message_id, scope)
                if msg.role != "counselor":
                    raise NotAnAnswer(f"message {message_id} is the student's — feedback is on the counselor's "
                                      "answers (the message_id of a turn result)")
                fb = Feedback(message_id=msg.id, rating=1 if rating == "up" else -1, comment=redact(comment))
                s.add(fb)
                review = s.scalar(select(Review).where(Review.message_id == msg.id))
                if rating == "down":
                    reason, priority = NEGATIVE_FEEDBACK
                    if review is None:
                        review = Review(message_id=msg.id, reason=reason, priority=priority)
                        s.add(review)
                    elif review.status == "pending" and review.priority > priority:
                        review.reason, review.priority = reason, priority
                s.flush()
                out = {"id": fb.id, "message_id": msg.id, "rating": rating,
                       "review_id": review.id if review else None, "review_reason": review.reason if review else None}
                s.commit()
                return out
    raise AssertionError("unreachable: the last failed attempt re-raises")


# ------------------------------------------------------------------------------------------------ reviews

def review_queue(factory: Factory, limit: int, offset: int, status: str = "pending") -> tuple[int, list[dict]]:
    """Reviews in priority order: crisis, negative feedback, fact guard, low confidence, random sample."""
    with factory() as s:
        total = s.scalar(select(func.count(Review.id)).where(Review.status == status)) or 0
        rows = s.execute(
            select(Review, Message).join(Message, Message.id == Review.message_id).where(Review.status == status)
            .order_by(Review.priority, Review.created_at, Review.id).limit(limit).offset(offset)
        ).all()
        questions = {}
        for _, m in rows:
            questions[m.id] = s.scalar(select(Message.text).where(
                Message.session_id == m.session_id, Message.seq == m.seq - 1, Message.role == "student"))
        items = [{"id": r.id, "message_id": m.id, "session_id": m.session_id, "reason": r.reason,
                  "priority": r.priority, "status": r.status, "created_at": r.created_at, "answer": m.text,
                  "question": questions[m.id]} for r, m in rows]
    return int(total), items


def _review(s: Session, review_id: int) -> tuple[Review, Message]:
    row = s.execute(select(Review, Message).join(Message, Message.id == Review.message_id)
                    .where(Review.id == review_id)).first()
    if row is None:
        raise ReviewNotFound(f"no review {review_id} — list the queue with GET /v1/review/queue")
    return row[0], row[1]


def _conversation(s: Session, msg: Message) -> list[Message]:
    return list(s.scalars(select(Message).where(Message.session_id == msg.session_id, Message.seq <= msg.seq)
                          .order_by(Message.seq)))


def review_detail(factory: Factory, review_id: int) -> dict[str, Any]:
    with factory() as s:
        review, msg = _review(s, review_id)
        session = s.get(ChatSession, msg.session_id)
        feedback = s.scalars(select(Feedback).where(Feedback.message_id == msg.id).order_by(Feedback.id))
        return {
            "review": {"id": review.id, "reason": review.reason, "priority": review.priority, "status": review.status,
                       "corrected_text": review.corrected_text, "note": review.note, "reviewer": review.reviewer,
                       "created_at": review.created_at, "decided_at": review.decided_at},
            "session": {"id": session.id, "careful": session.careful, "urgent": session.urgent,
                        "summary": session.summary, "turns": session.turns,
                        "profile": {k: [v["value"] for v in vs] for k, vs in (session.profile or {}).items()}},
            "conversation": [message_json(m) for m in _conversation(s, msg)],
            "answer": message_json(msg),
            "facts_used": msg.facts_used or [],
            "passages_used": msg.passages_used or [],
            "feedback": [{"rating": "up" if f.rating > 0 else "down", "comment": f.comment, "created_at": f.created_at}
                         for f in feedback],
        }


def decide(factory: Factory, review_id: int, status: str, reviewer: str, *, text: str | None = None,
           note: str = "") -> dict[str, Any]:
    """Approve, edit (with the corrected answer) or reject a review; a later decision replaces an earlier one."""
    with factory() as s:
        review, _ = _review(s, review_id)
        review.status, review.reviewer, review.note, review.decided_at = status, reviewer, redact(note), _now()
        review.corrected_text = redact(text) if status == "edited" and text is not None else None
        s.commit()
        return {"id": review.id, "status": review.status, "reviewer": reviewer, "decided_at": review.decided_at}


def clear_urgent(factory: Factory, session_id: str) -> None:
    """A reviewer decided on every crisis answer of the session: it no longer needs a counselor now."""
    with factory() as s:
        pending = s.scalar(select(func.count(Review.id)).join(Message, Message.id == Review.message_id).where(
            Message.session_id == session_id, Review.reason == CRISIS.reason, Review.status == "pending")) or 0
        if not pending:
            s.execute(update(ChatSession).where(ChatSession.id == session_id).values(urgent=False))
            s.commit()


# ------------------------------------------------------------------------------------------------ exports

@dataclass
class Reviewed:
    """A decided review with the conversation up to its answer, as the exports need it."""

    review: Review
    message: Message
    session: ChatSession
    turns: list[tuple[str, str]]  # (student|counselor, text) up to and including the reviewed answer


def _reviewed(factory: Factory, statuses: tuple[str, ...]) -> Iterator[Reviewed]:
    """Decided reviews, oldest first. Earlier answers of the conversation appear as a reviewer left them (the
    corrected text when edited), and the conversation starts after the last earlier answer that was rejected."""
    with factory() as s:
        ids = list(s.scalars(select(Review.id).where(Review.status.in_(statuses)).order_by(Review.id)))
    for start in range(0, len(ids), 200):
        with factory() as s:
            rows = s.execute(select(Review, Message).join(Message, Message.id == Review.message_id)
                             .where(Review.id.in_(ids[start:start + 200])).order_by(Review.id)).all()
            for review, msg in rows:
                conversation = _conversation(s, msg)
                decided = {r.message_id: r for r in s.scalars(select(Review).where(
                    Review.message_id.in_([m.id for m in conversation])))}
                turns: list[tuple[str, str]] = []
                for m in conversation:
                    r = decided.get(m.id)
                    if m.id != msg.id and r is not None and r.status == "rejected":
                        turns = []  # the context before a rejected answer is dropped with it
                        continue
                    edited = r is not None and r.status == "edited" and r.corrected_text
                    turns.append((m.role, r.corrected_text if edited else m.text))
                while turns and turns[0][0] != "student":
                    turns.pop(0)
                yield Reviewed(review, msg, s.get(ChatSession, msg.session_id), turns)


def export_sft(factory: Factory, fact_blocks) -> Iterator[dict[str, Any]]:
    """Approved and edited answers as `ReviewExport` lines (docs/finetune.md), redacted: the conversation up to
    the answer, with the facts, passages, profile and summary the answer had (as stored)."""
    for item in _reviewed(factory, ("approved", "edited")):
        msg, session = item.message, item.session
        profile = {SLOT_LABELS.get(k, k): ", ".join(v["value"] for v in vs) for k, vs in (session.profile or {}).items()}
        passages = tuple(Passage(p.get("source_id", ""), p.get("title", ""), p.get("as_of"), p.get("text", ""),
                                 float(p.get("score") or 0.0)) for p in msg.passages_used or [])
        export = ReviewExport(
            session_id=msg.session_id, source="edited" if item.review.status == "edited" else "approved",
            messages=tuple(ReviewMessage("user" if role == "student" else "assistant", redact(text))
                           for role, text in item.turns),
            facts=tuple(fact_blocks(msg.facts_used or [])), profile=profile, summary=redact(session.summary or ""),
            passages=passages)
        yield {**export.to_json(), "review_id": item.review.id}


def export_preferences(factory: Factory) -> Iterator[dict[str, Any]]:
    """Edited answers as preference pairs: chosen = the reviewer's text, rejected = the original; redacted."""
    for item in _reviewed(factory, ("edited",)):
        if not item.review.corrected_text:
            continue
        context = tuple(ReviewMessage("user" if role == "student" else "assistant", redact(text))
                        for role, text in item.turns[:-1])
        prompt = next((m.content for m in reversed(context) if m.role == "user"), "")
        yield PreferencePair(item.message.session_id, item.review.id, prompt, context,
                             redact(item.review.corrected_text), redact(item.message.text)).to_json()


# ------------------------------------------------------------------------------------------------ knowledge

def list_documents(factory: Factory, limit: int, offset: int, *, kind: str | None = None,
                   title_part: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Documents of the knowledge DB in id order, with their chunk counts; `title_part` filters by title."""
    where = []
    if kind:
        where.append(Document.kind == kind)
    if title_part:
        where.append(Document.title.contains(title_part.replace("\x00", ""), autoescape=True))
    chunks = select(Chunk.document_id, func.count(Chunk.id).label("n")).group_by(Chunk.document_id).subquery()
    with factory() as s:
        total = s.scalar(select(func.count(Document.id)).where(*where)) or 0
        rows = s.execute(select(Document, func.coalesce(chunks.c.n, 0)).outerjoin(chunks, chunks.c.document_id == Document.id)
                         .where(*where).order_by(Document.id).limit(limit).offset(offset)).all()
    items = [{"external_id": d.external_id, "kind": d.kind, "title": d.title, "as_of": d.as_of, "chunks": n,
              "updated_at": d.updated_at} for d, n in rows]
    return int(total), items


def list_flagged(factory: Factory, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """Stored passages flagged at ingest as instruction-like (retrieval never shows them to students), newest first."""
    with factory() as s:
        total = s.scalar(select(func.count(Chunk.id)).where(Chunk.flag.is_not(None))) or 0
        rows = s.execute(select(Chunk.id, Document.external_id, Document.title, Chunk.position, Chunk.flag, Chunk.text)
                         .join(Document).where(Chunk.flag.is_not(None)).order_by(Chunk.id.desc())
                         .limit(limit).offset(offset)).all()
    return int(total), [dict(zip(("chunk_id", "external_id", "title", "position", "flag", "text"), r)) for r in rows]


def document_ids(factory: Factory, external_ids: list[str]) -> dict[str, int]:
    """external_id -> document id of those that are in the knowledge DB."""
    with factory() as s:
        return dict(s.execute(select(Document.external_id, Document.id).where(Document.external_id.in_(external_ids))).all())


def database_reachable(engine: Engine) -> None:
    """Raises (any DB error) when the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
