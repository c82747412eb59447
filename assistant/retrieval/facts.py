"""SQL fact lookup: recognise occupations named in text and return their structured facts.

Matching works on names and the dictionary's similar names, ignoring spaces (`웹 디자이너` = `웹디자이너`) and
accepting a Korean particle or ending right after the name (`간호사가`, `간호사는`, `간호사되려면`). The longest
name wins where names overlap (`웹디자이너` over `디자이너`). A similar name shared by many occupations
(`연구원`) is too vague to identify one and is not used. The name index is loaded once and reloaded only when
the knowledge version changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from db.models import Document, Occupation, OccupationAlias
from ingest.korean import MIDDLE_DOTS, compact_positions, is_syllable
from ingest.occupation_text import OccupationFields, education_short

MAX_SCAN_CHARS = 4000  # names are looked for in the first 4,000 characters of a (possibly huge) text
AMBIGUOUS = 3  # an alias naming more than this many occupations identifies none
_QUALIFIER = re.compile(r"\([^)]*\)")
# what may follow a name inside the same word: particles, copulas, endings, plural/honorific suffixes
_FOLLOWERS = (
    "이", "가", "은", "는", "을", "를", "의", "에", "로", "으로", "와", "과", "도", "만", "랑", "이랑", "하고", "한테",
    "께", "처럼", "보다", "들", "님", "나", "이나", "란", "이란", "라", "이라", "야", "이야", "요", "이요", "예", "이에",
    "되", "돼", "될", "된", "하", "할", "해", "했", "직", "쪽", "분야", "일", "이었", "였", "까지", "부터", "인데", "인가",
    "면", "이면", "지", "이지", "이죠", "죠", "요?",
)


@dataclass(frozen=True)
class OccupationFacts:
    """Structured facts of one occupation, ready to be injected into the conversation memory."""

    occupation_id: int
    code: str
    name: str
    external_id: str | None
    summary: str
    education_level: str | None
    skill_years: str | None
    certificates: tuple[str, ...]
    similar_names: tuple[str, ...]
    related: tuple[str, ...]
    classification: str | None
    survey_year: int | None
    matched: str = ""  # the text span that named it

    @property
    def education_short(self) -> str | None:
        return education_short(self.education_level)

    @property
    def fields(self) -> OccupationFields:
        """What a fact block says about this occupation (`ingest.occupation_text.fact_lines` renders it)."""
        return OccupationFields(
            name=self.name, summary=self.summary or None, education=self.education_short,
            education_detail=self.education_level, skill=self.skill_years, certificates=self.certificates,
            similar=self.similar_names, related=self.related, classification=self.classification,
            year=self.survey_year)


@dataclass(frozen=True)
class Mention:
    occupation_ids: tuple[int, ...]
    alias: str
    kind: str  # "name" | "base" | "similar"
    start: int
    end: int
    text: str


@dataclass
class _NameIndex:
    by_alias: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    found: dict[str, tuple[Mention, ...]] = field(default_factory=dict)  # text -> its mentions (a turn asks 2-3 times)


class FactLookup:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self._index = _NameIndex()
        self.version: int | None = None
        self._records: dict[int, OccupationFacts] = {}  # occupation id -> facts, for the index in use

    def load(self, version: int | None = None) -> None:
        self.use(self.build(), version)

    def use(self, index: _NameIndex, version: int | None) -> None:
        """Search `index` (from `build`, made beside the one in use) from now on."""
        self._index, self.version, self._records = index, version, {}

    def build(self) -> _NameIndex:
        """The occupation-name index of the DB as it is now."""
        by_alias: dict[str, list[tuple[int, str]]] = {}
        with self.factory() as s:
            for occ_id, key, kind in s.execute(select(OccupationAlias.occupation_id, OccupationAlias.compact, OccupationAlias.kind)):
                if len(key) >= 2:
                    by_alias.setdefault(key, []).append((occ_id, kind))
        for key, owners in list(by_alias.items()):  # 수의사(일반) is also found as 수의사, 일반의사 as 의사
            base = _QUALIFIER.sub("", key)
            if base.startswith("일반") and len(base) > 3:
                base = base[2:]
            named = [(o, "base") for o, k in owners if k == "name"]
            if base != key and len(base) >= 2 and named:
                by_alias.setdefault(base, []).extend(named)
        for key, owners in list(by_alias.items()):
            for kind in ("name", "base"):  # an occupation's own name beats other occupations' similar names
                best = [o for o in owners if o[1] == kind]
                if best:
                    by_alias[key] = best
                    break
            else:
                if len(owners) > AMBIGUOUS:
                    del by_alias[key]
        return _NameIndex(by_alias, sorted({len(k) for k in by_alias}, reverse=True))

    def mentions(self, text: str) -> list[Mention]:
        """Occupation names in `text`, left to right, longest match first, not overlapping."""
        text = text[:MAX_SCAN_CHARS]
        idx = self._index
        if (known := idx.found.get(text)) is not None:
            return list(known)
        flat, where = compact_positions(text, MIDDLE_DOTS)
        out: list[Mention] = []
        i = 0
        while i < len(flat):
            if not is_syllable(flat[i]) and not flat[i].isalnum():
                i += 1
                continue
            hit = None
            for n in idx.lengths:
                if i + n <= len(flat) and flat[i : i + n] in idx.by_alias:
                    if self._right_boundary(text, where[i + n - 1]) and self._left_boundary(text, where[i], n):
                        hit = n
                        break
            if hit:
                key = flat[i : i + hit]
                owners = idx.by_alias[key]
                start, end = where[i], where[i + hit - 1] + 1
                out.append(Mention(tuple(o for o, _ in owners), key, owners[0][1], start, end, text[start:end]))
                i += hit
            else:
                i += 1
        if len(idx.found) >= 4096:
            idx.found.clear()
        idx.found[text] = tuple(out)
        return out

    @staticmethod
    def _left_boundary(text: str, start: int, length: int) -> bool:
        """Short names (2 syllables) must start a word; longer ones may end a compound (`병원간호사`)."""
        return length > 2 or start == 0 or not is_syllable(text[start - 1])

    @staticmethod
    def _right_boundary(text: str, last: int) -> bool:
        rest = []
        for ch in text[last + 1 :]:
            if not is_syllable(ch):
                break
            rest.append(ch)
        if not rest:
            return True
        tail = "".join(rest)
        return any(tail.startswith(f) for f in _FOLLOWERS)

    def facts(self, occupation_ids: Sequence[int], matched: str = "") -> list[OccupationFacts]:
        """The occupations' facts, read from the DB once per knowledge version (a turn asks for the same few
        occupations several times: 3.9 ms p50 a lookup from SQLite, ~0.05 ms from memory)."""
        records = self._records
        missing = [i for i in dict.fromkeys(occupation_ids) if i not in records]
        if missing:
            with self.factory() as s:
                rows = s.scalars(
                    select(Occupation)
                    .where(Occupation.id.in_(missing))
                    .options(selectinload(Occupation.certificates), selectinload(Occupation.aliases),
                             selectinload(Occupation.relations))
                ).all()
                ext = dict(s.execute(select(Document.id, Document.external_id).where(
                    Document.id.in_([r.document_id for r in rows if r.document_id]))).all())
                for r in rows:
                    records[r.id] = self._record(r, ext.get(r.document_id), "")
        return [replace(records[i], matched=matched) for i in occupation_ids if i in records]

    @staticmethod
    def _record(o: Occupation, external_id: str | None, matched: str) -> OccupationFacts:
        return OccupationFacts(
            occupation_id=o.id, code=o.code, name=o.name, external_id=external_id, summary=o.summary,
            education_level=o.education_level, skill_years=o.skill_years,
            certificates=tuple(c.name for c in o.certificates),
            similar_names=tuple(a.alias for a in o.aliases if a.kind == "similar"),
            related=tuple(r.related_name for r in o.relations), classification=o.keco_name,
            survey_year=o.survey_year, matched=matched,
        )

    def facts_for_documents(self, document_ids: Sequence[int]) -> list[OccupationFacts]:
        """Facts of the occupations whose passage documents these are (other documents give nothing)."""
        with self.factory() as s:
            by_doc = dict(s.execute(select(Occupation.document_id, Occupation.id).where(
                Occupation.document_id.in_(list(document_ids)))).all())
        return self.facts([by_doc[d] for d in document_ids if d in by_doc])

    def facts_for_external_ids(self, external_ids: Sequence[str]) -> list[OccupationFacts]:
        """Facts of the occupations of these documents, in the given order (unknown ids give nothing)."""
        with self.factory() as s:
            by_ext = dict(s.execute(select(Document.external_id, Occupation.id).join(
                Occupation, Occupation.document_id == Document.id).where(Document.external_id.in_(list(external_ids)))).all())
        facts = {f.occupation_id: f for f in self.facts([by_ext[e] for e in external_ids if e in by_ext])}
        return [facts[by_ext[e]] for e in external_ids if e in by_ext and by_ext[e] in facts]

    def lookup(self, text: str) -> list[OccupationFacts]:
        """Facts of every occupation named in `text` (an ambiguous similar name gives each of its occupations)."""
        out: list[OccupationFacts] = []
        seen: set[int] = set()
        for m in self.mentions(text):
            ids = [i for i in m.occupation_ids if i not in seen]
            seen.update(ids)
            out.extend(self.facts(ids, matched=m.text))
        return out
