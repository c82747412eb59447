"""The unit every reader produces: one source document, before chunking and embedding."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any


def nfc(text: str) -> str:
    """NFC-normalise Korean text (decomposed jamo from macOS files or PDFs become syllables)."""
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class SourceDocument:
    """A document as read from a source, NFC-normalised by the reader.

    external_id: stable id the operator (or the source) gives the document, e.g. `job:K000001224` or
    `docs:guide.md`; re-ingesting the same id replaces the document when its content changed.
    """

    external_id: str
    title: str
    text: str
    source_path: str
    as_of: str | None = None  # a date ("2024-03-01") or a year ("2024") the content is valid for
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """sha256 over everything that changes what gets chunked, embedded or shown."""
        payload = json.dumps(
            [self.title, self.text, self.as_of, self.metadata], ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
