"""Errors of the ingest package.

Part of the one error tree drawn in `db/errors.py` (root `JinroError`).
Each message says what went wrong and what to do next."""

from __future__ import annotations

from db.errors import JinroError


class IngestError(JinroError):
    """Base class of every error raised by `ingest`."""


class SourceError(IngestError):
    """A source path cannot be read at all (missing, unreadable, unsupported)."""


class RecordError(IngestError):
    """One record of a source is malformed; the rest of the source is still loaded.

    `location` is `file:line` (or `file` when there are no lines) so the operator can find it.
    """

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


class EmbeddingModelMismatch(IngestError):
    """The index was built with another embedding model than the one configured."""


class EmbedderUnavailable(IngestError):
    """The configured embedding model cannot be loaded."""


class UnsupportedSource(SourceError):
    """A file whose format `ingest docs` does not read (or a binary file); it is skipped with a message."""


class EmptySource(SourceError):
    """A file with no text at all; it is skipped with a message."""
