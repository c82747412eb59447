"""Query expansion with the student-vocabulary lexicon (data/lexicon/student_terms.tsv).

Students say 포크레인, 롤, 피티쌤, 유튜버, 네일, 알바생; the job dictionary says 굴착기, 게임, 트레이너, 크리에이터,
손톱, 판매원. `expand(query)` finds lexicon terms in the query and returns the dictionary-style targets to add,
so the lexical lists (BM25 over morphemes, character bigrams) can match the dictionary's wording.

Matching works on the query with its spaces removed ("포크 레인" finds 포크레인), longest term first, without
overlaps, ASCII case-insensitively. A short Hangul term (one or two syllables: 롤, 폰, 쌤, 네일, 피티) must begin a
word and end one, or be followed by a particle/ending (롤이랑, 폰으로) or by a common head noun (롤선수, 폰게임),
so it is not found inside unrelated words (컨트롤, 롤모델, 스폰서, 폰트). Longer Hangul terms match anywhere.
A Latin term (AI, CF, PD) must not touch other Latin letters (AIR, PDF). Targets already present in the
query are not added again.

The lexicon is read once per path (lru_cache). Operators can point `JINRO_LEXICON` at another TSV file (same
format): the edges read it into `Settings.lexicon` and the runtime passes `load_lexicon(path)` to the retriever;
callers may also pass `expand(query, lexicon)`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from assistant.errors import RetrievalError
from ingest.korean import compact_positions, is_hangul

DEFAULT_LEXICON = Path(__file__).resolve().parents[2] / "data" / "lexicon" / "student_terms.tsv"
SHORT = 2  # Hangul terms up to this many characters need word boundaries

# what may directly follow a short term inside one word: particles, copula/verb endings, head nouns
_FOLLOWERS = tuple(sorted({
    # particles
    "이", "가", "을", "를", "은", "는", "도", "만", "의", "에", "에서", "에게", "한테", "께", "으로", "로", "랑",
    "이랑", "하고", "와", "과", "나", "이나", "든", "이든", "이라", "라", "라는", "이라는", "같은", "처럼", "보다",
    "까지", "부터", "마다", "들", "님", "씨", "요", "이요",
    # copula and light verbs
    "이야", "야", "이에요", "예요", "에요", "인데", "인", "이고", "고", "이면", "면", "이지", "지", "임", "했", "하",
    "해", "할", "한", "되", "될", "된", "돼", "잘", "좀", "만들", "키우", "배우", "보",
    # head nouns of compounds students write without a space
    "선수", "회사", "업체", "업계", "계열", "쪽", "관련", "분야", "일", "직업", "가게", "샵", "숍", "매장", "알바", "학과",
    "과", "게임", "방송", "작가", "기사", "쌤", "선생", "영상", "제작", "개발", "디자인", "사진", "촬영", "편집",
}, key=len, reverse=True))


@dataclass(frozen=True)
class Lexicon:
    """Compacted, lower-cased term -> its targets (dictionary-style terms), plus per-first-character lengths."""

    path: str
    entries: dict[str, tuple[str, ...]]
    fields: dict[str, str]
    lengths: dict[str, tuple[int, ...]]  # first character -> term lengths starting with it, longest first

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class ExpandedQuery:
    text: str  # the query plus the added terms (what the lexical lists search for)
    added_terms: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()  # the lexicon terms found in the query, in order


def _norm(s: str) -> str:
    return unicodedata.normalize("NFC", s).lower()


def _is_latin(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def parse_lexicon(text: str, path: str = "<text>") -> Lexicon:
    """TSV with a header `term<TAB>targets<TAB>field`; targets comma-separated; `#` lines are comments."""
    entries: dict[str, tuple[str, ...]] = {}
    fields: dict[str, str] = {}
    header_seen = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        if not header_seen:
            header_seen = True
            if cols[0].strip().lower() == "term":
                continue
        if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
            raise RetrievalError(f"{path}:{n}: a lexicon line is `term<TAB>target,target[<TAB>field]`")
        term = "".join(_norm(cols[0]).split())
        targets = tuple(dict.fromkeys(
            unicodedata.normalize("NFC", t.strip()) for t in cols[1].split(",") if t.strip()))
        if term in entries:
            raise RetrievalError(f"{path}:{n}: {cols[0].strip()!r} is listed twice")
        entries[term] = targets
        fields[term] = cols[2].strip() if len(cols) > 2 else ""
    by_first: dict[str, set[int]] = {}
    for term in entries:
        by_first.setdefault(term[0], set()).add(len(term))
    lengths = {ch: tuple(sorted(ls, reverse=True)) for ch, ls in by_first.items()}
    return Lexicon(path, entries, fields, lengths)


@lru_cache(maxsize=8)
def _load(path: str) -> Lexicon:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RetrievalError(f"cannot read the query lexicon {path}: {exc}") from exc
    return parse_lexicon(text, path)


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """The lexicon at `path`, else the project's data/lexicon/student_terms.tsv (cached)."""
    chosen = path or DEFAULT_LEXICON
    return _load(str(Path(chosen).resolve()))


def _compact(query: str) -> tuple[str, list[bool], list[bool]]:
    """The query without whitespace (NFC, lower case), and for each character whether it began / ended a word."""
    norm = _norm(query)
    flat, where = compact_positions(norm)
    starts = [i == 0 or norm[i - 1].isspace() for i in where]
    ends = [i + 1 == len(norm) or norm[i + 1].isspace() for i in where]
    return flat, starts, ends


def _left_ok(c: str, i: int, term: str, starts: list[bool]) -> bool:
    if _is_latin(term[0]):
        return i == 0 or not _is_latin(c[i - 1])
    if len(term) > SHORT:
        return True
    return starts[i] or not is_hangul(c[i - 1])


def _right_ok(c: str, j: int, term: str, ends: list[bool], lex: Lexicon) -> bool:
    """j: index just after the match."""
    if j >= len(c):
        return True
    if _is_latin(term[-1]):
        return not _is_latin(c[j])
    if len(term) > SHORT or ends[j - 1] or not is_hangul(c[j]):
        return True
    rest = c[j:]
    if rest.startswith(_FOLLOWERS):
        return True
    return any(rest[:n] in lex.entries for n in lex.lengths.get(rest[0], ()))  # another term: 롤프로게이머


def find_terms(query: str, lexicon: Lexicon | None = None) -> list[str]:
    """Lexicon terms (compacted) found in `query`, longest first at each position, without overlaps."""
    lex = lexicon if lexicon is not None else load_lexicon()
    c, starts, ends = _compact(query)
    found: list[str] = []
    i, n = 0, len(c)
    while i < n:
        hit = None
        for length in lex.lengths.get(c[i], ()):
            term = c[i:i + length]
            if len(term) == length and term in lex.entries and _left_ok(c, i, term, starts) \
                    and _right_ok(c, i + length, term, ends, lex):
                hit = term
                break
        if hit is None:
            i += 1
        else:
            found.append(hit)
            i += len(hit)
    return found


def expand(query: str, lexicon: Lexicon | None = None) -> ExpandedQuery:
    """The query plus the dictionary-style targets of the lexicon terms it contains (those not in it already)."""
    lex = lexicon if lexicon is not None else load_lexicon()
    terms = find_terms(query, lex)
    if not terms:
        return ExpandedQuery(query)
    compact = "".join(_norm(query).split())
    added: list[str] = []
    for term in terms:
        for target in lex.entries[term]:
            if target not in added and _norm(target) not in compact:
                added.append(target)
    text = f"{query} {' '.join(added)}" if added else query
    return ExpandedQuery(text, tuple(added), tuple(terms))


def compose(texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    """One normalised query vector (1 x dim) from the query's (first) and its added terms' vectors, each weighted by
    its length in characters plus the prefix and special tokens an embedding carries: an average like the one the
    e5 engine makes of a long text's windows. On dev it ranks like embedding the joined text: hybrid Recall@1 / @5
    0.759 / 0.939 vs 0.764 / 0.939 (retrieval_dev), 0.984 / 1.0 both (procedural), 0.510 / 0.756 vs 0.505 / 0.756
    (paraphrases) (docs/retrieval.md)."""
    if len(texts) == 1:
        return vectors[:1]
    weights = np.array([len("".join(t.split())) + (5.0 if i == 0 else 3.0) for i, t in enumerate(texts)],
                       dtype=np.float32)
    v = weights @ vectors
    return (v / max(float(np.linalg.norm(v)), 1e-12))[None, :].astype(np.float32)
