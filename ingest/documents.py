"""The unit every reader produces: one source document, before chunking and embedding."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any


# control characters, zero-width and bidi-override characters, soft hyphens: invisible, and used to hide text (the
# one definition: readers, the counselor's message intake and the crisis classifier use it)
INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def nfc(text: str) -> str:
    """NFC-normalise Korean text (decomposed jamo from macOS files or PDFs become syllables)."""
    return unicodedata.normalize("NFC", text)


_SPACES = re.compile(r"[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# "<" and ">" and their look-alikes become the CJK angle brackets 〈 〉 (which NFKC keeps as they are), so a stored
# passage can never close a prompt's fence (</자료>) or spell a special token (<|endoftext|>), however it was typed
_ANGLES = str.maketrans({**dict.fromkeys("<＜﹤‹⟨❬❮〈", "〈"), **dict.fromkeys(">＞﹥›⟩❭❯〉", "〉")})


def tidy(text: str) -> str:
    """NFC, one newline style, runs of spaces collapsed, lines stripped, at most one blank line in a row; invisible
    characters dropped and angle brackets neutralised (retrieved text is data: see `_ANGLES`)."""
    text = nfc(text).replace("\r\n", "\n")
    text = re.sub(r"[\r\x85\u2028\u2029]", "\n", text)
    text = _SPACES.sub(" ", INVISIBLE.sub("", text).translate(_ANGLES))
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


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
