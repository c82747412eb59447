"""Sentence-aware chunking for Korean text.

Kiwi splits sentences (Korean endings such as `~다.`, `~요` without a period, quotes); sentences are packed
into chunks of about `size` characters, and the last sentences of a chunk (up to `overlap` characters) open the
next one. A sentence longer than `size` is cut at whitespace. The document title is not part of the stored
chunk text; `chunk_context` prepends it wherever a chunk is embedded or indexed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ingest.lexical import kiwi_sentences

_PARAGRAPH = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class ChunkText:
    position: int
    text: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def chunk_context(title: str, text: str) -> str:
    """The text that is embedded and lexically indexed for a chunk: title first, so every chunk knows its doc."""
    return f"{title}\n{text}" if title else text


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, paragraph by paragraph; short texts skip the analyser."""
    out: list[str] = []
    for para in _PARAGRAPH.split(text):
        para = " ".join(para.split())
        if not para:
            continue
        if len(para) <= 80:
            out.append(para)
            continue
        out.extend(kiwi_sentences(para))
    return out


def _cut_long(sentence: str, size: int) -> list[str]:
    pieces, current = [], ""
    for word in sentence.split(" "):
        while len(word) > size:  # no spaces at all (rare in Korean, common in URLs)
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:size])
            word = word[size:]
        if current and len(current) + 1 + len(word) > size:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def chunk_text(text: str, size: int = 600, overlap: int = 120) -> list[ChunkText]:
    if size < 50:
        raise ValueError("chunk size must be at least 50 characters")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be between 0 and the chunk size")
    sentences: list[str] = []
    for s in split_sentences(text):
        sentences.extend(_cut_long(s, size) if len(s) > size else [s])
    chunks: list[list[str]] = []
    current: list[str] = []
    length = 0
    for s in sentences:
        if current and length + 1 + len(s) > size:
            chunks.append(current)
            carry: list[str] = []
            carried = 0
            for prev in reversed(current):  # the overlap must leave room for `s`: no chunk longer than `size`
                if carried + len(prev) > overlap or carried + len(prev) + 1 + len(s) > size:
                    break
                carry.insert(0, prev)
                carried += len(prev) + 1
            current, length = carry, carried
        current.append(s)
        length += len(s) + 1
    if current:
        chunks.append(current)
    return [ChunkText(i, " ".join(c)) for i, c in enumerate(chunks)]
