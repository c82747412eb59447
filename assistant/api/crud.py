"""Database work of the API that is not the counselor's: API keys, feedback, the review queue and its exports.

Functions take a session factory and plain values and return plain dicts or rows; they raise `Problem`s for
what the caller got wrong (a missing review) and never know about HTTP otherwise.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from assistant.api.problems import Problem, not_found
from assistant.api.security import ROLES, Caller, hash_key, key_prefix, looks_like_key, new_key
from assistant.redaction import redact
from db.conversation import ApiKey, ChatSession, Feedback, Message, Review

Factory = sessionmaker[Session]
NEGATIVE_FEEDBACK = ("negative_feedback", 1)


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
    """Revoke by id or prefix (at least 8 characters); returns the keys revoked."""
    with factory() as s:
        if ident.isdigit():
            rows = list(s.scalars(select(ApiKey).where(ApiKey.id == int(ident))))
        elif len(ident) >= 8:
            rows = list(s.scalars(select(ApiKey).where(ApiKey.prefix == key_prefix(ident))))
        else:
            rows = []
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
        raise not_found(f"no message {message_id} in your sessions — use a message_id returned by "
                        "POST /v1/sessions/{session_id}/messages", "message-not-found")
    return msg


def add_feedback(factory: Factory, message_id: int, scope: str | None, rating: str, comment: str) -> dict[str, Any]:
    """Store feedback; a thumbs-down queues the answer for review unless it is queued with a higher priority."""
    for attempt in range(3):
        try:
            with factory() as s:
                msg = _owned_message(s, message_id, scope)
                if msg.role != "counselor":
                    raise Problem(422, "not-an-answer", f"message {message_id} is the student's — feedback is on "
                                  "the counselor's answers (the message_id of a turn result)")
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
        except IntegrityError:  # two thumbs-down at once both created the review: the second one retries
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


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
        raise not_found(f"no review {review_id} — list the queue with GET /v1/review/queue", "review-not-found")
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
            Message.session_id == session_id, Review.reason == "crisis", Review.status == "pending")) or 0
        if not pending:
            s.execute(update(ChatSession).where(ChatSession.id == session_id).values(urgent=False))
            s.commit()


# ------------------------------------------------------------------------------------------------ exports

def _decided(factory: Factory, statuses: tuple[str, ...]) -> Iterator[tuple[Review, Message, list[Message]]]:
    with factory() as s:
        ids = list(s.scalars(select(Review.id).where(Review.status.in_(statuses)).order_by(Review.id)))
    for start in range(0, len(ids), 200):
        with factory() as s:
            for review, msg in s.execute(select(Review, Message).join(Message, Message.id == Review.message_id)
                                         .where(Review.id.in_(ids[start:start + 200])).order_by(Review.id)).all():
                yield review, msg, _conversation(s, msg)


def _turns(conversation: list[Message], last_text: str) -> list[dict[str, str]]:
    out = [{"role": m.role, "content": redact(m.text)} for m in conversation[:-1]]
    return out + [{"role": "counselor", "content": redact(last_text)}]


def export_sft(factory: Factory, fact_lines) -> Iterator[dict[str, Any]]:  # noqa: ANN001 - (facts_used) -> list[dict]
    """Approved and edited answers in the fine-tune format (one dict per JSONL line), redacted."""
    for review, msg, conversation in _decided(factory, ("approved", "edited")):
        edited = review.status == "edited" and review.corrected_text
        yield {"session_id": msg.session_id, "review_id": review.id,
               "messages": _turns(conversation, review.corrected_text if edited else msg.text),
               "facts": fact_lines(msg.facts_used or []), "source": "edited" if edited else "approved",
               "derived": False}


def export_preferences(factory: Factory) -> Iterator[dict[str, Any]]:
    """Edited answers as preference pairs: chosen = the reviewer's text, rejected = the original; redacted."""
    for review, msg, conversation in _decided(factory, ("edited",)):
        if not review.corrected_text:
            continue
        context = [{"role": m.role, "content": redact(m.text)} for m in conversation[:-1]]
        prompt = next((t["content"] for t in reversed(context) if t["role"] == "student"), "")
        yield {"session_id": msg.session_id, "review_id": review.id, "prompt": prompt, "messages": context,
               "chosen": redact(review.corrected_text), "rejected": redact(msg.text)}
