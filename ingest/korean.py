"""Korean text helpers shared by ingest, the assistant and the fine-tune data: particles (은/는, 이/가, 과/와,
이에요/예요), the first sentence of a text, the polite form of a dictionary sentence, and the compact form of
names (no spaces, no middle dots) that occupation names are matched by.

Everything here is pure string work on NFC text; it imports nothing of ours, so every package may use it.
"""

from __future__ import annotations

import re

MIDDLE_DOTS = "·ㆍ"
_QUALIFIER_END = re.compile(r"\([^)]*\)\s*$")
_SENTENCE = re.compile(r"(?<=[.!?다요])\s+")


# ---------------------------------------------------------------- letters and names

def is_syllable(ch: str) -> bool:
    """A precomposed Hangul syllable (가..힣)."""
    return "가" <= ch <= "힣"


def is_hangul(ch: str) -> bool:
    """A Hangul syllable or a compatibility jamo (ㄱ..ㆎ: ㅋㅋ, ㅎㅇ)."""
    return "\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e"


def compact_positions(text: str, drop: str = "") -> tuple[str, list[int]]:
    """`text` without whitespace (and without the characters in `drop`), and the index in `text` of each character
    kept, so a match in the compact text can be mapped back to the original."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if not ch.isspace() and ch not in drop:
            chars.append(ch)
            where.append(i)
    return "".join(chars), where


def compact(name: str) -> str:
    """The matching key of a name: no spaces, no middle dots (`웹 디자이너`, `웹·디자이너` -> `웹디자이너`)."""
    return compact_positions(name, MIDDLE_DOTS)[0]


# ---------------------------------------------------------------- particles

def has_final(word: str) -> bool | None:
    """Whether the word (ignoring a trailing "(qualifier)") ends in a syllable with a final consonant (받침);
    None when it does not end in a Hangul syllable (웹툰PD)."""
    base = _QUALIFIER_END.sub("", word).strip() or word
    last = base[-1:]
    if last and is_syllable(last):
        return (ord(last) - 0xAC00) % 28 != 0
    return None


def josa(word: str, with_final: str, without: str, *, unknown: str | None = None) -> str:
    """`word` + the particle form its last syllable takes: `with_final` after a final consonant, else `without`.
    After a non-Hangul ending the form is `unknown` when given, else both as `with_final(without)` (웹툰PD은(는))."""
    final = has_final(word)
    if final is None:
        return word + unknown if unknown is not None else f"{word}{with_final}({without})"
    return word + (with_final if final else without)


def eun(word: str) -> str:
    return josa(word, "은", "는")


def i_ga(word: str) -> str:
    return josa(word, "이", "가")


def eul(word: str) -> str:
    return josa(word, "을", "를")


def wa(word: str) -> str:
    return josa(word, "과", "와")


def copula(word: str) -> str:
    """word + 이에요/예요."""
    return josa(word, "이에요", "예요")


# ---------------------------------------------------------------- sentences

def first_sentence(text: str, limit: int) -> str:
    """The first sentence of `text` (whitespace collapsed), cut to `limit` characters with an ellipsis."""
    first = _SENTENCE.split(" ".join(text.split()), maxsplit=1)[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _syllable(cho: int, jung: int, jong: int = 0) -> str:
    return chr(0xAC00 + (cho * 21 + jung) * 28 + jong)


def _jamo(ch: str) -> tuple[int, int, int]:
    k = ord(ch) - 0xAC00
    return k // 588, (k % 588) // 28, k % 28


_VOWEL_PLUS_EO = {8: 9, 13: 14, 20: 6, 18: 4}  # ㅗ->ㅘ, ㅜ->ㅝ, ㅣ->ㅕ, ㅡ->ㅓ ; ㅏ ㅐ ㅓ ㅔ ㅕ stay


def polite(sentence: str) -> str | None:
    """'…관리한다.' -> '…관리해요.' for the dictionary's plain-style endings; None when not sure."""
    s = sentence.rstrip()
    if not s.endswith("다.") or len(s) < 3 or not is_syllable(s[-3]):
        return None
    body, last = s[:-3], s[-3]
    cho, jung, jong = _jamo(last)
    if last == "한":
        return body + "해요."
    if last == "된":
        return body + "돼요."
    if last in "있없":
        return body + last + "어요."
    if last == "든":  # 만든다 <- 만들다
        return body + "들어요."
    if last == "는" and body and is_syllable(body[-1]):  # 받는다 -> 받아요
        if body[-1] == "돕":
            return body[:-1] + "도와요."
        return body + ("아요." if _jamo(body[-1])[1] in (0, 8) else "어요.")
    if jong != 4:  # not an ㄴ다 form
        return None
    if jung in (0, 1, 4, 5, 6):
        return body + _syllable(cho, jung) + "요."
    if jung in _VOWEL_PLUS_EO:
        return body + _syllable(cho, _VOWEL_PLUS_EO[jung]) + "요."
    return None
