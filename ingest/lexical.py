"""Korean lexical analysis for BM25: content morphemes from Kiwi, plus character bigrams.

Whitespace tokens fail on Korean particles (학과를 / 학과에서 / 학과는 are three "words"); Kiwi separates the
noun from its particle, so all three index as `학과`. Chunk terms are computed once at ingest time and stored in
the DB; queries go through the same `morphemes` function.
"""

from __future__ import annotations

import threading
import re
import unicodedata
from functools import lru_cache
from typing import Sequence

# nouns, proper nouns, verb and adjective stems, roots, foreign words, numbers, hanja
CONTENT_TAGS = frozenset({"NNG", "NNP", "NR", "VV", "VA", "XR", "SL", "SN", "SH", "VV-R", "VA-R", "VV-I", "VA-I"})
ANALYZER_VERSION = "kiwi-cong-v1"
MAX_ANALYSED_CHARS = 20_000  # longer texts are analysed in part; a 100 KB query is cut, never a crash

_lock = threading.Lock()
kiwi_lock = _lock  # hold it around any direct use of shared_kiwi()


@lru_cache(maxsize=1)
def shared_kiwi():
    """The process's one Kiwi analyser (its model takes ~2.5 s and ~400 MB to load)."""
    from kiwipiepy import Kiwi

    return Kiwi(model_type="cong")


_kiwi = shared_kiwi


def _terms(tokens) -> list[str]:
    out = []
    for t in tokens:
        tag = t.tag
        if tag in CONTENT_TAGS:
            form = t.form.lower() if tag == "SL" else t.form
            if tag.startswith(("VV", "VA")):
                form = form + "다"  # 되 -> 되다, keeps verb stems apart from nouns of one syllable
            out.append(form)
    return out


def morphemes(text: str) -> list[str]:
    """Content morphemes of `text` (NFC), in order; empty for text with no words (only punctuation or emoji)."""
    text = unicodedata.normalize("NFC", text)[:MAX_ANALYSED_CHARS]
    if not text.strip():
        return []
    with _lock:  # Kiwi objects are not documented as thread-safe
        tokens = _kiwi().tokenize(text)
    return _terms(tokens)


def morphemes_many(texts: Sequence[str]) -> list[list[str]]:
    with _lock:
        kiwi = _kiwi()
        return [_terms(kiwi.tokenize(unicodedata.normalize("NFC", t)[:MAX_ANALYSED_CHARS])) if t.strip() else [] for t in texts]


_NOT_ALNUM = re.compile(r"[\W_]+")


def char_bigrams(text: str) -> list[str]:
    """Overlapping character bigrams of each Hangul/alphanumeric run (spaces removed inside a word run)."""
    text = unicodedata.normalize("NFC", text)[:MAX_ANALYSED_CHARS].lower()
    out: list[str] = []
    for word in text.split():
        word = _NOT_ALNUM.sub("", word)  # re's \w is str.isalnum() plus "_"
        if len(word) == 1:
            out.append(word)
        out.extend(map(str.__add__, word[:-1], word[1:]))
    return out


def kiwi_sentences(text: str) -> list[str]:
    """Kiwi's sentence split of `text` (shares the analyser and its lock with `morphemes`)."""
    with _lock:
        return [s.text.strip() for s in shared_kiwi().split_into_sents(text) if s.text.strip()]
