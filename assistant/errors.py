"""Errors of the assistant package.

Part of the one error tree drawn in `db/errors.py` (root `JinroError`).
Each message says what went wrong and where."""

from __future__ import annotations

from db.errors import JinroError


class AssistantError(JinroError):
    """Base class of every error raised by `assistant`."""


class EvalDataError(AssistantError):
    """An evaluation file is missing or one of its lines is malformed.

    The message starts with `file:line` (or `file` when no line applies) so the
    data owner can open the exact spot.
    """


class SafetyModelError(AssistantError):
    """The shipped crisis classifier is missing, unreadable or out of date; the message says how to rebuild it."""


class QuestionTypeModelError(AssistantError):
    """The shipped question-type classifier is missing or unreadable; the message says how to rebuild it."""


class PromptError(AssistantError):
    """The prompt cannot be rendered as asked (e.g. a malformed turn sequence)."""


class PromptBudgetError(PromptError):
    """Even with every cuttable part removed the prompt does not fit the context window."""


class GenerationError(AssistantError):
    """A generator cannot be loaded or cannot produce text; the message says what to change."""


class RetrievalError(AssistantError):
    """A query cannot be answered by the retriever (bad input or an unusable knowledge DB)."""


class EmptyKnowledge(RetrievalError):
    """The knowledge DB holds no documents yet; run `ingest jobs data/job_dictionary` first."""


class NotFound(AssistantError):
    """A record the request names does not exist, or is not the caller's (the two look the same)."""


class SessionNotFound(NotFound):
    """No such session for this caller (or it expired)."""


class ConcurrentTurn(AssistantError):
    """Another turn of the same session was stored at the same time; retry the request."""


class ModelServerError(GenerationError):
    """A model server (OpenAI-compatible HTTP) answered with an HTTP error; `status` and `server_message` say which."""

    def __init__(self, message: str, *, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status, self.server_message = status, server_message


class MessageNotFound(NotFound):
    """No such message in the caller's sessions."""


class ReviewNotFound(NotFound):
    """No such review in the queue."""


class DocumentNotFound(NotFound):
    """No such document in the knowledge DB."""


class JobNotFound(NotFound):
    """No such background ingest job."""


class InvalidInput(AssistantError):
    """The request names something that exists but cannot be used this way (e.g. feedback on a student's message)."""


class NotAnAnswer(InvalidInput):
    """Feedback was given on a message that is not a counselor's answer."""
