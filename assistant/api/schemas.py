"""Request and response bodies of the API (pydantic v2), also the OpenAPI schema at /openapi.json.

Free text is cleaned on the way in: NUL characters and lone surrogates (valid JSON, but no database stores them)
are dropped, so odd input is a normal request rather than a server error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def clean_text(value: str) -> str:
    return "".join(ch for ch in value if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)


Text = Annotated[str, AfterValidator(clean_text)]
ProfileValue = Annotated[str, Field(max_length=60), AfterValidator(clean_text)]
ProfileValues = ProfileValue | Annotated[list[ProfileValue], Field(max_length=6)] | None


# ------------------------------------------------------------------------------------------------ sessions

class ProfileIn(BaseModel):
    """Student profile slots; each takes one value or a list. In PATCH, `null` or `[]` clears a slot."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"school": "고2", "interests": ["동물"]}})

    school: ProfileValues = None
    interests: ProfileValues = None
    strengths: ProfileValues = None
    subjects: ProfileValues = None
    occupations: ProfileValues = None
    constraints: ProfileValues = None


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: ProfileIn | None = None


class FactMemory(BaseModel):
    external_id: str | None
    name: str
    education: str | None = None
    certificates: list[str] = []
    turn: int | None = None


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    last_active_at: datetime
    turns: int
    careful: bool = Field(description="set after a crisis turn: the counselor answers with extra care")
    urgent: bool = Field(description="a crisis turn is waiting for a human counselor")
    profile: dict[str, list[str]]
    summary: str
    facts: list[FactMemory] = Field(description="occupations in the session's memory, the one in focus last")
    expires_at: datetime | None = None


class Page(BaseModel):
    total: int
    limit: int
    offset: int
    next_offset: int | None


class SessionPage(Page):
    items: list[SessionOut]


# ------------------------------------------------------------------------------------------------ messages

class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"text": "수의사가 되려면 어떻게 해야 해요?"}})
    text: Annotated[Text, Field(min_length=1, max_length=4000)]


class Citation(BaseModel):
    external_id: str
    title: str
    as_of: str | None


class HelpLine(BaseModel):
    name: str
    number: str
    description: str


class Safety(BaseModel):
    crisis: bool
    level: Literal["crisis", "concern", "none"] = Field(
        "none", description="crisis: the safe script; concern: a check-in before the answer; none")
    category: str | None
    source: str | None = Field(None, description="what flagged the crisis: rules, model or context (earlier turns)")
    careful_mode: bool
    help_lines: list[HelpLine]


class TurnOut(BaseModel):
    session_id: str
    message_id: int
    answer: str
    citations: list[Citation]
    facts_used: list[dict[str, Any]]
    safety: Safety
    timings_ms: dict[str, float]
    generator: str
    retrieval_confidence: float | None
    fact_guard: str | None = Field(description="an LLM's answer: passed | cut (the grounded answer finished it after "
                                   "the sentences that passed) | replaced; null for a composed answer")
    review: str | None


class MessageOut(BaseModel):
    id: int
    seq: int
    role: Literal["student", "counselor"]
    text: str
    created_at: datetime
    citations: list[Citation] = []
    facts_used: list[dict[str, Any]] = []
    safety: dict[str, Any] = {}
    generator: str | None = None
    retrieval_confidence: float | None = None
    fact_guard: str | None = None


class MessagePage(BaseModel):
    items: list[MessageOut] = Field(description="oldest first")
    next_before: int | None = Field(description="pass as `before` for the previous page; null at the start")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: Annotated[Text, Field(max_length=2000)] = ""


class FeedbackOut(BaseModel):
    id: int
    message_id: int
    rating: Literal["up", "down"]
    review_id: int | None = Field(description="the review the answer is queued in, if any")
    review_reason: str | None


# ------------------------------------------------------------------------------------------------ OpenAI

class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Annotated[str, Field(max_length=32)]
    content: Annotated[str, Field(max_length=20000)] | list[dict[str, Any]] | None = None


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {
        "model": "jinro-counselor", "messages": [{"role": "user", "content": "간호사는 무슨 일을 해요?"}],
        "user": "student-42"}})
    model: Annotated[str, Field(max_length=200)] = "jinro-counselor"
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=200)]
    stream: bool = False
    user: Annotated[Text, Field(max_length=200)] | None = None


# ------------------------------------------------------------------------------------------------ review

class ReviewItem(BaseModel):
    id: int
    message_id: int
    session_id: str
    reason: str
    priority: int
    status: str
    created_at: datetime
    answer: str
    question: str | None


class ReviewPage(Page):
    items: list[ReviewItem]


class ReviewDetail(BaseModel):
    review: dict[str, Any]
    session: dict[str, Any]
    conversation: list[MessageOut] = Field(description="the session up to and including the reviewed answer")
    answer: MessageOut
    facts_used: list[dict[str, Any]]
    passages_used: list[dict[str, Any]]
    feedback: list[dict[str, Any]]


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[Text, Field(min_length=1, max_length=8000)]
    note: Annotated[Text, Field(max_length=2000)] = ""


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[Text, Field(max_length=2000)] = ""


class ReviewDecision(BaseModel):
    id: int
    status: Literal["approved", "edited", "rejected"]
    reviewer: str
    decided_at: datetime


# ------------------------------------------------------------------------------------------------ knowledge

class DocumentOut(BaseModel):
    external_id: str
    kind: str
    title: str
    as_of: str | None
    chunks: int
    updated_at: datetime | None


class DocumentPage(Page):
    items: list[DocumentOut]


class FlaggedPassage(BaseModel):
    chunk_id: int
    external_id: str = Field(description="the document it belongs to")
    title: str
    position: int = Field(description="the passage's place in the document (0: the first)")
    flag: str = Field(description="why it reads like an instruction to a model, with the words")
    text: str = Field(description="the passage as stored (personal data already replaced)")


class FlaggedPage(Page):
    items: list[FlaggedPassage]


class IngestOut(BaseModel):
    files: int
    added: int
    updated: int
    unchanged: int
    chunks_embedded: int
    chunks_reused: int
    problems: list[str] = Field(description="one line per record or file not loaded (`file:line: reason`), the first 100")
    problems_total: int = Field(0, description="how many records or files were not loaded in all")
    flagged: int = Field(0, description="passages stored with a flag because they read like instructions to a model "
                         "(kept from students; `GET /v1/knowledge/flagged` lists them for reviewers)")
    knowledge_version: int
    job: int = Field(description="the background job that ingested the upload (`GET /v1/knowledge/jobs/{id}`)")


class IngestJob(BaseModel):
    id: int
    status: Literal["queued", "running", "cancelling", "cancelled", "ok", "partial", "failed"]
    files: int
    done: int = Field(description="documents (or records) handled so far")
    added: int
    updated: int
    unchanged: int
    errors: int = Field(description="records or files not loaded, in all")
    chunks_embedded: int
    chunks_reused: int
    problems: list[str] = Field(description="the first 100 of them, one line each")
    flagged: int = Field(0, description="passages flagged as instruction-like (`GET /v1/knowledge/flagged`)")
    started_at: datetime | None
    finished_at: datetime | None


class Health(BaseModel):
    status: str
    pid: int
    version: str


class ReadyEmbedder(BaseModel):
    configured: str
    model: str
    notes: list[str]


class Ready(BaseModel):
    status: str
    checks: dict[str, str]
    embedder: ReadyEmbedder
    safety: str  # the crisis screen's layers, e.g. "rules + n-grams + e5-small"
