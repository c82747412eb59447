"""How DB facts enter the prompt, what a turn asks about, and which sources an answer used.

`fact_block` is the one rendering of an occupation's facts: the LLM sees it in the prompt, the fine-tune data
is rendered with it, and the `grounded` generator reads its own answers from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.retrieval.facts import OccupationFacts
from assistant.counselor.prompt import FactBlock, Passage, PromptParts

NO_CERTIFICATE = "등록된 자격증 없음"
LABELS = {
    "name": "직업명",
    "duties": "하는 일",
    "education": "학력",
    "education_detail": "학력 기준",
    "certificates": "관련 자격증",
    "similar": "비슷한 이름",
    "related": "관련 직업",
    "classification": "직업 분류",
    "skill": "숙련 기간",
    "year": "조사 연도",
}
SOURCE_NAME = "한국직업사전"


def fact_block(f: OccupationFacts) -> FactBlock:
    lines = [f"{LABELS['name']}: {f.name}"]
    if f.summary:
        lines.append(f"{LABELS['duties']}: {f.summary}")
    if f.education_level:
        lines.append(f"{LABELS['education']}: {f.education_short}")
        lines.append(f"{LABELS['education_detail']}: {f.education_level}")
    lines.append(f"{LABELS['certificates']}: {', '.join(f.certificates) if f.certificates else NO_CERTIFICATE}")
    if f.similar_names:
        lines.append(f"{LABELS['similar']}: {', '.join(f.similar_names[:8])}")
    if f.related:
        lines.append(f"{LABELS['related']}: {', '.join(f.related[:8])}")
    if f.classification:
        lines.append(f"{LABELS['classification']}: {f.classification}")
    if f.skill_years:
        lines.append(f"{LABELS['skill']}: {f.skill_years}")
    if f.survey_year:
        lines.append(f"{LABELS['year']}: {f.survey_year}")
    return FactBlock(f.external_id or f"occupation:{f.code}", f.name, str(f.survey_year) if f.survey_year else None, tuple(lines))


def block_fields(block: FactBlock) -> dict[str, str]:
    """label -> value of a fact block's lines (inverse of `fact_block`)."""
    by_label = {v: k for k, v in LABELS.items()}
    out: dict[str, str] = {}
    for line in block.lines:
        label, _, value = line.partition(": ")
        if label in by_label:
            out[by_label[label]] = value
    return out


INTENTS: list[tuple[str, re.Pattern[str]]] = [
    ("salary", re.compile(r"연봉|월급|수입|돈\s*(?:을|은|이)?\s*(?:얼마|많이|잘)|급여|페이|벌어|버는|전망|미래|없어지|사라지|대체될|취업률")),
    ("certificate", re.compile(r"자격증|자격|면허|시험\s*(?:봐|쳐|보|쳐야)|라이선스")),
    ("education", re.compile(r"학력|대학|학교|학과|전공|졸업|공부|배워|배우|진학|과\s*가야|무슨\s*과|어느\s*과|학원|유학")),
    ("related", re.compile(r"비슷한|관련된?\s*직업|다른\s*직업|유사|대신|어떤\s*직업들|직업\s*(?:더|또)|말고\s*(?:다른|또)")),
    ("duties", re.compile(r"무슨\s*일|뭐\s*(?:해|하는|를\s*해)|뭘\s*해|하는\s*일(?:은|이\s*뭐|이\s*어떤|이야|이에요)|어떤\s*일(?:을|해|하)|일은\s*뭐|뭐하는|업무")),
    ("fit", re.compile(r"맞을까|맞을지|어울|적성|잘\s*맞|할\s*수\s*있을까|괜찮을까|어때")),
]
GREETING = re.compile(r"^\s*(안녕|반가|고마워|감사|ㅎㅇ|하이|hello\b|hi\b)", re.I)
BACK_REFERENCE = re.compile(r"그\s*직업|그거|그것|그\s*일|거기|그\s*분야|그\s*쪽|그럼|그러면|그건")


def classify(question: str) -> str:
    for name, pattern in INTENTS:
        if pattern.search(question):
            return name
    if GREETING.search(question) and len(question) < 30:
        return "greeting"
    return "explore"


def refers_back(question: str) -> bool:
    return bool(BACK_REFERENCE.search(question))


@dataclass(frozen=True)
class Citation:
    external_id: str
    title: str
    as_of: str | None

    def to_json(self) -> dict:
        return {"external_id": self.external_id, "title": self.title, "as_of": self.as_of}


def citations_for(answer: str, parts: PromptParts) -> list[Citation]:
    """Sources whose title or fact values the answer uses; the occupation in focus when none is named."""
    out: dict[str, Citation] = {}
    compact_answer = "".join(answer.split())
    for block in parts.facts:
        values = [block.title] + [v for k, v in block_fields(block).items() if k in ("certificates", "education")]
        if any(v and "".join(v.split()) in compact_answer for v in values if v != NO_CERTIFICATE):
            out[block.source_id] = Citation(block.source_id, block.title, block.as_of)
    for p in parts.passages:
        if "".join(p.title.split()) in compact_answer:
            out.setdefault(p.source_id, Citation(p.source_id, p.title, p.as_of))
    if not out and parts.facts:
        b = parts.facts[-1]
        out[b.source_id] = Citation(b.source_id, b.title, b.as_of)
    return list(out.values())


def passage_of(hit) -> Passage:  # noqa: ANN001  (assistant.retrieval.hybrid.Hit)
    return Passage(hit.external_id, hit.title, hit.as_of, hit.text, hit.score)
