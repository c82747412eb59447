"""Personal-data redaction for Korean student messages (before logging, storing or sending to a model).

`find_pii(text)` returns the spans; `redact(text)` replaces each span with a typed placeholder:

    phone    010-1234-5678, 01012345678, 010 1234 5678, +82 10-1234-5678, 02-123-4567, 1588-1234
    rrn      주민등록번호 900101-1234567 / 9001011234567 (the date part and the 7th digit must be valid)
    email    someone@example.com
    card     16-digit card numbers, grouped 4-4-4-4 or not
    account  other long digit runs: 10+ digits, optionally split by hyphens (110-123-456789)
    address  road addresses (…시 …구 …로 12), lot addresses (…동 123-4) and 101동 1203호

Ordinary numbers stay: grades (3학년, 3등급), scores (95점), years (2024년), dates (2024-03-15), money,
and the help-line numbers (109, 1388, 112, 117, 1577-0199).  The patterns are deliberately simple
and conservative; names are not detected (Korean names need a model and cause many false hits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLACEHOLDERS = {
    "phone": "[전화번호]",
    "rrn": "[주민등록번호]",
    "email": "[이메일]",
    "card": "[카드번호]",
    "account": "[계좌번호]",
    "address": "[주소]",
}
# numbers that must never be redacted: the help lines the assistant itself gives out
_ALLOWED_NUMBERS = {"109", "1388", "112", "117", "119", "15770199"}


@dataclass(frozen=True)
class PiiSpan:
    kind: str  # a key of PLACEHOLDERS
    start: int
    end: int


_SEP = r"(?:\s{0,2}[-.]\s{0,2}|\s{1,2})?"  # 010-1234-5678, 010 1234 5678, 010 - 1234 - 5678, 010.1234.5678
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("rrn", re.compile(r"(?<!\d)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\s{0,2}-?\s{0,2}[1-8]\d{6}(?!\d)")),
    ("card", re.compile(r"(?<!\d)\d{4}(\s{0,2}-\s{0,2}|\s{1,2}|)\d{4}\1\d{4}\1\d{4}(?!\d)")),
    # mobile: 010/011/016-019, also written +82 10 / 0082 10
    ("phone", re.compile(r"(?<![\d+])(?:(?:\+|00)82" + _SEP + r"(?:\(0\))?1[016789]|01[016789])"
                         + _SEP + r"\d{3,4}" + _SEP + r"\d{4}(?!\d)")),
    # landline: 02, 031-033, 041-044, 051-055, 061-064, 070, optionally in parentheses or with +82
    ("phone", re.compile(r"(?<![\d+])(?:(?:\+|00)82" + _SEP + r"(?:2|[3-6][1-5]|70)|\(?0(?:2|[3-6][1-5]|70)\)?)"
                         + r"[-.)\s]?\d{3,4}" + _SEP + r"\d{4}(?!\d)")),
    # nationwide representative numbers: 15xx, 16xx, 18xx
    ("phone", re.compile(r"(?<![\d-])1[568]\d{2}[-.\s]?\d{4}(?![\d-])")),
    ("account", re.compile(r"(?<![\d-])\d{2,6}(?:-\d{2,8}){1,4}(?![\d-])|(?<!\d)\d{10,19}(?!\d)")),
)

# addresses ------------------------------------------------------------------------------
_ADMIN = r"(?:[가-힣]{1,10}(?:특별시|광역시|특별자치시|특별자치도|도|시|군|구)\s*){1,3}"
_NUM = r"\d{1,5}(?:-\d{1,5})?"
_UNIT_AFTER = (r"(?!\s*(?:명|시|분|개|점|등|학년|반|살|년|월|일|회|권|층|칸|원|배|위|%|km|킬로|번(?!지|길)|대|학기|교시|"
               r"과|장|쪽|문제|페이지|p\b))")
_BUILDING = (r"(?:\s*,?\s*[가-힣A-Za-z0-9]{0,15}(?:아파트|빌라|맨션|오피스텔|타운|하이츠|빌딩|주택))?"
             r"(?:\s*\d{1,4}\s*동)?(?:\s*\d{1,5}\s*호)?")
_ADDRESS = re.compile(
    # road address with city/district: 서울시 강남구 테헤란로 12 / 강남구 테헤란로12길 34
    r"(?:" + _ADMIN + r"[가-힣0-9]{0,14}[가-힣0-9](?<!으)(?:로|길)\s*" + _NUM + r"(?:번길\s*" + _NUM + r")?"
    # road address without district: the road name must be 3+ syllables and not end in 으로 (a particle),
    # and the number must stand alone (컴퓨터로 3D / 모듈로 10cm are not addresses)
    r"|(?<![가-힣])[가-힣0-9]{2,14}(?<!으)(?:대로|로|길)(?:\s*\d{1,3}번?길)?\s+" + _NUM + r"(?=$|[\s,.)/]|에|이|입|으로|번지)"
    # lot address: 역삼동 123-4 / 서울시 관악구 신림동 1234 / …리 12번지
    r"|" + _ADMIN + r"[가-힣0-9]{1,10}(?:동|리|(?<=\d)가)\s*" + _NUM
    + r"|(?<![가-힣])[가-힣0-9]{1,10}(?<![활운행이감자충노소출변발작연공아])(?:동|(?<=\d)가)\s*\d{1,5}-\d{1,5}"
    r"|[가-힣0-9]{1,10}(?:동|리)\s*\d{1,5}(?:-\d{1,5})?\s*번지"
    r")" + _UNIT_AFTER + _BUILDING
    # apartment unit on its own: (래미안) 101동 1203호
    + r"|(?:[가-힣A-Za-z0-9]{0,15}(?:아파트|빌라|맨션|오피스텔|타운|하이츠)\s*)?\d{1,4}\s*동\s*\d{1,5}\s*호"
)


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def find_pii(text: str) -> list[PiiSpan]:
    """Non-overlapping PII spans in `text`, sorted by start (longer and earlier-listed kinds win)."""
    if not isinstance(text, str):
        raise TypeError(f"find_pii expects str, got {type(text).__name__}")
    found: list[tuple[int, int, int, str]] = []  # (start, -length, priority, kind)
    for prio, (kind, pattern) in enumerate(_PATTERNS):
        for m in pattern.finditer(text):
            if kind == "phone" and _digits(m.group()) in _ALLOWED_NUMBERS:
                continue
            if kind == "account" and len(_digits(m.group())) < 10:
                continue
            found.append((m.start(), -(m.end() - m.start()), prio, kind))
    for m in _ADDRESS.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1].isspace():
            end -= 1
        found.append((m.start(), -(end - m.start()), len(_PATTERNS), "address"))
    spans: list[PiiSpan] = []
    for start, neg_len, _, kind in sorted(found):
        end = start - neg_len
        if spans and start < spans[-1].end:
            continue  # overlaps a span already taken (which starts earlier or is longer)
        spans.append(PiiSpan(kind, start, end))
    return _merge_addresses(text, spans)


def _merge_addresses(text: str, spans: list[PiiSpan]) -> list[PiiSpan]:
    """Join address pieces split only by spaces/commas ("…로 12, 101동 1203호") into one span."""
    merged: list[PiiSpan] = []
    for span in spans:
        prev = merged[-1] if merged else None
        if prev and prev.kind == span.kind == "address" and not text[prev.end:span.start].strip(" ,"):
            merged[-1] = PiiSpan("address", prev.start, span.end)
        else:
            merged.append(span)
    return merged


def redact(text: str) -> str:
    """`text` with every PII span replaced by its placeholder, e.g. "[전화번호]"."""
    out, last = [], 0
    for span in find_pii(text):
        out += [text[last:span.start], PLACEHOLDERS[span.kind]]
        last = span.end
    out.append(text[last:])
    return "".join(out)
