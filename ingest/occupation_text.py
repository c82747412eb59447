"""The occupation text format: how one occupation of the 한국직업사전 is written as text, and read back.

One set of labels, two renderings of `OccupationFields`:

    document text (`document_text`): ingest stores it as `job:<code>`; retrieval returns chunks of it as passages

        웹디자이너: 웹사이트 개발에 필요한 디자인 및 구성요소를 개발한다.            <- name: summary

        하는 일: 웹사이트의 목적과 대상을 파악하고 ...                             <- the duties

        비슷한 이름: 웹 디자이너. 학력: 전문대졸 정도. 숙련기간: 1년 초과 ~ 2년 이하. 관련 자격증: 등록된 자격증 없음.
        관련 직업: .... 직업 분류: 미디어 콘텐츠 디자이너. 산업: ....             <- one paragraph of fact sentences

    fact block (`fact_lines`): the prompt's [직업 사실] shows it, at inference and in the fine-tune data

        직업명: 웹디자이너
        하는 일: 웹사이트 개발에 필요한 디자인 및 구성요소를 개발한다.             <- the summary
        학력: 전문대졸 정도
        학력 기준: 12년 초과 ~ 14년 이하(전문대졸 정도)
        관련 자격증: 등록된 자격증 없음
        비슷한 이름: ... / 관련 직업: ... (at most 8 each) / 직업 분류: ... / 숙련 기간: ... / 조사 연도: 2012

`parse_fact_lines` and `parse_document` read them back into the same fields, and `parse_facts` reads the fact
sentences of any passage cut from a document. The grounded composer, the citations and the fact guard read facts
only through these, so a label renamed here changes the writers and the readers together
(tests/test_occupation_text.py round-trips real records).

Two labels differ between the renderings for historical reasons and stay so, because the document texts' content
hashes, the chunks and the fine-tune data depend on them: the document says `숙련기간`, the block `숙련 기간`;
and `하는 일` heads the duties in a document but the summary in a block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

SOURCE_NAME = "한국직업사전"
NO_CERTIFICATE = "등록된 자격증 없음"  # the certificate value of an occupation that has none registered
MAX_LISTED = 8  # similar names and related occupations shown in a fact block

LABELS = {  # field -> label of a fact-block line, in the order of the lines
    "name": "직업명",
    "summary": "하는 일",
    "education": "학력",
    "education_detail": "학력 기준",
    "certificates": "관련 자격증",
    "similar": "비슷한 이름",
    "related": "관련 직업",
    "classification": "직업 분류",
    "skill": "숙련 기간",
    "year": "조사 연도",
}
DUTIES_LABEL = "하는 일"  # heads a document's duties paragraph
DOCUMENT_LABELS = {  # field -> label of a document's fact sentence, in the order of the sentences
    "similar": LABELS["similar"],
    "education": LABELS["education"],
    "skill": "숙련기간",
    "certificates": LABELS["certificates"],
    "related": LABELS["related"],
    "classification": LABELS["classification"],
    "industry": "산업",
}
_LIST_FIELDS = ("similar", "related")
_LIST_SEPARATOR = re.compile(r",(?![^()]*\))")  # commas outside parentheses: "사회복지사(1급, 2급)" stays whole
_EDUCATION_SHORT = re.compile(r"\(([^)]*)\)\s*$")
_SENTENCE_LABEL = "|".join(map(re.escape, DOCUMENT_LABELS.values()))
# a fact sentence: "label: value." up to the next labelled sentence, or to the end of the line (a cut chunk may
# stop inside one); a value may itself hold ". " (the dictionary writes "조경산업기사. 조경기사" now and then)
_FACT_SENTENCE = re.compile(
    rf"(?<!\S)(?P<label>{_SENTENCE_LABEL}):\s*(?P<value>[^\n]*?)(?:\.(?=\s+(?:{_SENTENCE_LABEL}):)|\.?\s*$)", re.MULTILINE)


@dataclass(frozen=True)
class OccupationFields:
    """What the texts say about one occupation. A field is None (or empty) where its line or sentence is absent."""

    name: str = ""
    summary: str | None = None  # what it does, in a sentence or two
    duties: str | None = None  # the long description (document only)
    education: str | None = None  # the short level: 대졸 정도
    education_detail: str | None = None  # the level as the dictionary gives it (fact block only)
    skill: str | None = None  # 숙련기간: 1년 초과 ~ 2년 이하
    certificates: tuple[str, ...] | None = None  # (): none registered (NO_CERTIFICATE); None: not stated
    similar: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    classification: str | None = None  # the KECO occupation class
    industry: str | None = None  # the KSIC industry (document only)
    year: int | None = None  # the survey year (fact block only)

    @property
    def certificates_text(self) -> str:
        """The certificates as written: `a, b`, or NO_CERTIFICATE; "" when not stated."""
        if self.certificates is None:
            return ""
        return ", ".join(self.certificates) if self.certificates else NO_CERTIFICATE


def education_short(level: str | None) -> str | None:
    """'14년 초과 ~ 16년 이하(대졸 정도)' -> '대졸 정도'."""
    if not level:
        return None
    m = _EDUCATION_SHORT.search(level)
    return m.group(1).strip() if m else level


def split_items(value: str) -> tuple[str, ...]:
    """The items of a comma list as written here and in the dictionary (commas inside parentheses kept)."""
    return tuple(item for item in (part.strip() for part in _LIST_SEPARATOR.split(value)) if item)


def _written(f: OccupationFields, key: str, limit: int | None = None) -> str | None:
    """The value of field `key` as a line or sentence writes it; None when there is nothing to write."""
    value = getattr(f, key)
    if key == "certificates":
        return f.certificates_text if value is not None else None
    if key in _LIST_FIELDS:
        return ", ".join(value[:limit]) if value else None
    return str(value) if value else None


# ---------------------------------------------------------------- rendering

def document_text(f: OccupationFields) -> str:
    """The document text of an occupation: name and summary, the duties, then the facts as short sentences."""
    parts = [f"{f.name}: {f.summary}" if f.summary else f.name]
    if f.duties:
        parts.append(f"{DUTIES_LABEL}: {f.duties}")
    facts = ((label, _written(f, key)) for key, label in DOCUMENT_LABELS.items())
    parts.append(" ".join(f"{label}: {value}." for label, value in facts if value is not None))
    return "\n\n".join(parts)


def view_text(f: OccupationFields) -> str:
    """What the occupation is, in one short text (name, newline, summary): the document's view, embedded beside its
    chunks (retrieval: the dense list scores a document by its best chunk plus its view)."""
    return f"{f.name}\n{f.summary}" if f.summary else f.name


def fact_lines(f: OccupationFields) -> tuple[str, ...]:
    """The `label: value` lines of an occupation's fact block (the name always, the rest where known)."""
    lines = [f"{LABELS['name']}: {f.name}"]
    for key, label in list(LABELS.items())[1:]:
        value = _written(f, key, MAX_LISTED)
        if value is not None:
            lines.append(f"{label}: {value}")
    return tuple(lines)


# ---------------------------------------------------------------- parsing

def _fields(values: dict[str, str]) -> OccupationFields:
    typed: dict[str, object] = {}
    for key, value in values.items():
        if key == "certificates":
            typed[key] = () if value == NO_CERTIFICATE else split_items(value)
        elif key in _LIST_FIELDS:
            typed[key] = split_items(value)
        elif key == "year":
            typed[key] = int(value) if value.isdigit() else None
        else:
            typed[key] = value
    return OccupationFields(**typed)  # type: ignore[arg-type]


def parse_fact_lines(lines: Iterable[str]) -> OccupationFields:
    """The fields of a fact block's lines (the inverse of `fact_lines`; unknown lines are ignored)."""
    by_label = {label: key for key, label in LABELS.items()}
    values: dict[str, str] = {}
    for line in lines:
        label, _, value = line.partition(": ")
        if label in by_label:
            values[by_label[label]] = value
    return _fields(values)


def parse_facts(text: str) -> OccupationFields:
    """The fact sentences (학력, 관련 자격증, ...) in a document text or in any passage cut from one; the first of
    each label counts. Name, summary and duties stay empty: a passage need not start where the document does."""
    by_label = {label: key for key, label in DOCUMENT_LABELS.items()}
    values: dict[str, str] = {}
    for m in _FACT_SENTENCE.finditer(text):
        values.setdefault(by_label[m.group("label")], m.group("value").strip())
    return _fields(values)


def parse_document(text: str) -> OccupationFields:
    """The fields of a whole document text (the inverse of `document_text`)."""
    head, *rest = text.split("\n\n")
    name, colon, summary = head.partition(": ")
    prefix = f"{DUTIES_LABEL}: "
    duties = next((p[len(prefix):] for p in rest if p.startswith(prefix)), None)
    facts = parse_facts(rest[-1]) if rest else OccupationFields()
    return replace(facts, name=name, summary=summary if colon else None, duties=duties)


def passage_lead(text: str) -> str:
    """A passage's text after its first `name: ` (for the first chunk of an occupation document: its summary)."""
    return text.split(": ", 1)[-1]
