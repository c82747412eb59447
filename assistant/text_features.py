"""Hashed character, jamo and word n-grams of a short text: the features of the project's small linear
classifiers (the crisis screen's learned layer, the question-type classifier), in one place.

The text is NFKC-normalised, lower-cased, stripped of invisible characters and of runs longer than two of one
character (ㅠㅠㅠㅠ → ㅠㅠ); a *compact* copy keeps only letters and digits, so spacing tricks ("주 거 버 리 고 싶
다", "자격증따려면") read like the plain text. From it come
    c  character 1-3-grams of the compact text (with ^ and $ at its ends),
    j  3-5-grams of its jamo (NFD), so a typo that changes one jamo keeps most features,
    w  the words as typed (split on anything not a letter or digit),
    s  (`sound=True`) character 2-3-grams of the compact text as pronounced, a final consonant carried over to a
       next syllable that starts with ㅇ (죽어 -> 주거, 싫어 -> 시러, 좋아 -> 조아), so respellings by sound share them,
and the caller's own signals (rule matches) with their weight. Each is hashed (crc32) into `N_FEATURES` buckets; a
text is the L2-normalised vector of its buckets.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.sparse import csr_matrix

from ingest.documents import INVISIBLE

N_FEATURES = 1 << 18
_RUNS = re.compile(r"(.)\1{2,}")
_WORDS = re.compile(r"\w+")


def normalise(text: str) -> str:
    """NFKC, lower case, no invisible characters, runs of one character cut to two."""
    return _RUNS.sub(r"\1\1", INVISIBLE.sub("", unicodedata.normalize("NFKC", text).lower()))


def compact(norm: str) -> str:
    """Letters and digits only: spacing and punctuation dropped."""
    return "".join(ch for ch in norm if ch.isalnum())


# a syllable's final consonant (jongseong index) -> (the final left behind, the initial it gives the next syllable)
_CARRY = {1: (0, 0), 2: (0, 1), 3: (1, 9), 4: (0, 2), 5: (4, 12), 6: (0, 2), 7: (0, 3), 8: (0, 5), 9: (8, 0),
          10: (8, 6), 11: (8, 7), 12: (8, 9), 13: (8, 16), 14: (8, 17), 15: (0, 5), 16: (0, 6), 17: (0, 7),
          18: (17, 9), 19: (0, 9), 20: (0, 10), 22: (0, 12), 23: (0, 14), 24: (0, 15), 25: (0, 16), 26: (0, 17),
          27: (0, 11)}
_SYLLABLES, _ONSET_NONE = 0xAC00, 11  # first Hangul syllable; the initial ㅇ (silent)


def carry(syllable: str) -> tuple[str, str, str] | None:
    """For a syllable whose final consonant moves on before a silent ㅇ: (the syllable without it, the first and
    the last syllable that start with that consonant); None otherwise (싶 -> 시, 파, 핗)."""
    a = ord(syllable) - _SYLLABLES
    if not 0 <= a < 11172 or a % 28 not in _CARRY:
        return None
    left, onset = _CARRY[a % 28]
    first = _SYLLABLES + onset * 588
    return chr(ord(syllable) - a % 28 + left), chr(first), chr(first + 587)


def pronounced(flat: str) -> str:
    """The text with each final consonant carried over to a next syllable that starts with a silent ㅇ (연음)."""
    chars = list(flat)
    for i in range(len(chars) - 1):
        b = ord(chars[i + 1]) - _SYLLABLES
        moved = carry(chars[i]) if 0 <= b < 11172 and b // 588 == _ONSET_NONE else None
        if moved:
            chars[i], chars[i + 1] = moved[0], chr(ord(moved[1]) + b % 588)
    return "".join(chars)


def hash_feature(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8")) & (N_FEATURES - 1)


def ngram_features(text: str, signals: Iterable[str] = (), signal_weight: float = 1.0,
                   tail: str | None = None, sound: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The distinct buckets of `text` and their values, L2-normalised; each signal is the bucket of "r" + signal.
    `tail`: a part of the text whose character n-grams count again, apart ("t"), e.g. its last clause;
    `sound`: add the n-grams of the text as pronounced ("s")."""
    norm = normalise(text)
    flat = compact(norm)
    grams: set[str] = set()
    padded = f"^{flat}$"
    for n in (1, 2, 3):
        grams.update("c" + padded[i:i + n] for i in range(len(padded) - n + 1))
    if tail is not None:
        end = f"{compact(normalise(tail))}$"
        for n in (1, 2, 3):
            grams.update("t" + end[i:i + n] for i in range(len(end) - n + 1))
    if sound:
        spoken = f"^{pronounced(flat)}$"
        for n in (2, 3):
            grams.update("s" + spoken[i:i + n] for i in range(len(spoken) - n + 1))
    jamo = unicodedata.normalize("NFD", flat)
    for n in (3, 4, 5):
        grams.update("j" + jamo[i:i + n] for i in range(len(jamo) - n + 1))
    grams.update("w" + w for w in _WORDS.findall(norm))
    buckets = {hash_feature(g): 1.0 for g in grams}
    for signal in signals:
        buckets[hash_feature("r" + signal)] = signal_weight
    idx = np.fromiter(buckets.keys(), dtype=np.int64, count=len(buckets))
    val = np.fromiter(buckets.values(), dtype=np.float32, count=len(buckets))
    return idx, val / np.sqrt(float((val * val).sum()) or 1.0)


def matrix(texts: Sequence[str], featurize: Callable[[str], tuple[np.ndarray, np.ndarray]]) -> csr_matrix:
    """The texts' feature vectors as rows of a sparse matrix (for training)."""
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        idx, val = featurize(text)
        rows.append(np.full(len(idx), i)), cols.append(idx), vals.append(val)
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    return csr_matrix((v, (r, c)), shape=(len(texts), N_FEATURES), dtype=np.float32)
