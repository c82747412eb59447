"""/v1/review: the counselors' review queue, decisions, and the fine-tune exports (reviewer or admin keys)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Callable, Iterator

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from assistant.api import crud
from assistant.api.deps import MAX_ID, ApiState, PageParams, Reviewer, State, next_offset
from assistant.api.schemas import EditIn, NoteIn, ReviewDecision, ReviewDetail, ReviewPage
from assistant.counselor.fact_block import fact_block
from assistant.counselor.prompt import FactBlock
from assistant.counselor.review import CRISIS
from ingest.occupation_text import OccupationFields, fact_lines

router = APIRouter(prefix="/v1/review", tags=["review"])
ReviewId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND = {404: {"description": "no such review"}}
JSONL = "application/x-ndjson"
JSONL_DOC = {200: {"content": {JSONL: {"schema": {"type": "string"}}}, "description": "one JSON object per line"}}


def fact_blocks(state: ApiState) -> Callable[[list[dict]], list[FactBlock]]:
    """facts_used of a message -> fact blocks as the prompt showed them, read again from the knowledge DB
    (rebuilt from the stored summary when the occupation has since been removed)."""
    lookup = state.runtime.retriever.facts

    def render(facts_used: list[dict]) -> list[FactBlock]:
        ids = [f.get("external_id") for f in facts_used if f.get("external_id")]
        doc_of = crud.document_ids(state.factory, ids)
        found = {f.external_id: f for f in lookup.facts_for_documents([doc_of[i] for i in ids if i in doc_of])}
        out = []
        for f in facts_used:
            ext = f.get("external_id")
            if ext in found:
                out.append(fact_block(found[ext]))
                continue
            year, certificates = f.get("survey_year"), f.get("certificates")
            stored = OccupationFields(
                name=f.get("name", ""), education=f.get("education"), related=tuple(f.get("related") or ()), year=year,
                certificates=tuple(certificates) if certificates is not None else None)
            out.append(FactBlock(ext or "", f.get("name", ""), str(year) if year else None, fact_lines(stored)))
        return out

    return render


def _jsonl(rows: Iterator[dict[str, Any]], filename: str) -> StreamingResponse:
    lines = (json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    return StreamingResponse(lines, media_type=JSONL, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/queue", response_model=ReviewPage)
def queue(state: State, _: Reviewer, page: PageParams,
          status: Annotated[str, Query(pattern="^(pending|approved|edited|rejected)$")] = "pending") -> dict:
    """Answers waiting for review: crisis first, then negative feedback, fact guard, low confidence, samples."""
    total, items = crud.review_queue(state.factory, page.limit, page.offset, status)
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset,
            "next_offset": next_offset(page, total)}


@router.get("/export/sft", responses=JSONL_DOC, response_class=StreamingResponse)
def export_sft(state: State, _: Reviewer) -> StreamingResponse:
    """Approved and edited answers for fine-tuning (JSONL, personal data redacted), one `ReviewExport` a line
    (assistant/counselor/review.py, docs/finetune.md): `session_id`, `source` (approved | edited), `messages` (user/assistant
    turns up to the answer; corrected texts where edited), `facts`, `passages`, `profile`, `summary`."""
    return _jsonl(crud.export_sft(state.factory, fact_blocks(state)), "jinro-sft.jsonl")


@router.get("/export/preferences", responses=JSONL_DOC, response_class=StreamingResponse)
def export_preferences(state: State, _: Reviewer) -> StreamingResponse:
    """Edited answers as preference pairs (JSONL, redacted): `prompt` (the student's turn), `messages` (the
    user/assistant context before the answer), `chosen` (the reviewer's text), `rejected` (the original)."""
    return _jsonl(crud.export_preferences(state.factory), "jinro-preferences.jsonl")


@router.get("/{review_id}", response_model=ReviewDetail, responses=NOT_FOUND)
def detail(review_id: ReviewId, state: State, _: Reviewer) -> dict:
    """The reviewed answer in its conversation, with the facts and passages it was given and its feedback."""
    return crud.review_detail(state.factory, review_id)


def _decide(state: ApiState, review_id: int, status: str, reviewer: Any, text: str | None, note: str) -> dict:
    out = crud.decide(state.factory, review_id, status, f"{reviewer.name} ({reviewer.prefix})", text=text, note=note)
    item = crud.review_detail(state.factory, review_id)
    if item["review"]["reason"] == CRISIS.reason:
        crud.clear_urgent(state.factory, item["session"]["id"])
    return out


@router.post("/{review_id}/approve", response_model=ReviewDecision, responses=NOT_FOUND)
def approve(review_id: ReviewId, state: State, reviewer: Reviewer, body: NoteIn | None = None) -> dict:
    """The answer is good as it is: it goes to the SFT export."""
    return _decide(state, review_id, "approved", reviewer, None, body.note if body else "")


@router.post("/{review_id}/edit", response_model=ReviewDecision, responses=NOT_FOUND)
def edit(review_id: ReviewId, body: EditIn, state: State, reviewer: Reviewer) -> dict:
    """Replace the answer with a corrected one: it goes to the SFT export and the preference pairs."""
    return _decide(state, review_id, "edited", reviewer, body.text, body.note)


@router.post("/{review_id}/reject", response_model=ReviewDecision, responses=NOT_FOUND)
def reject(review_id: ReviewId, state: State, reviewer: Reviewer, body: NoteIn | None = None) -> dict:
    """The answer is unusable: it is kept out of every export."""
    return _decide(state, review_id, "rejected", reviewer, None, body.note if body else "")
