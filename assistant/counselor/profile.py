"""The student profile: typed slots filled from what the student says, each value with the turn it came from.

Extraction is rule-based and conservative (a wrong slot is worse than an empty one). Single-valued slots
(school level and grade) are replaced when the student states them again ("아 저 고3이에요" corrects 고2);
list slots keep their values, newest last, and a value the student takes back ("수학은 이제 싫어요",
"~ 말고") is removed. Clients can also set the profile through the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

LIST_SLOTS = ("interests", "strengths", "subjects", "occupations", "constraints")
SLOT_LABELS = {
    "school": "학교/학년",
    "interests": "관심 분야",
    "strengths": "강점",
    "subjects": "좋아하는 과목",
    "occupations": "생각 중인 직업",
    "constraints": "고려할 점",
}
MAX_VALUES = 6  # per list slot; the oldest value goes first

_SCHOOL = [
    (re.compile(r"(중|고)\s*([1-3])(?![0-9])"), lambda m: f"{'중' if m.group(1) == '중' else '고'}{m.group(2)}"),
    (re.compile(r"(중학교|고등학교)\s*([1-3])\s*학년"), lambda m: f"{'중' if m.group(1) == '중학교' else '고'}{m.group(2)}"),
    (re.compile(r"초등학교\s*([1-6])\s*학년|초([1-6])(?![0-9])"), lambda m: f"초{m.group(1) or m.group(2)}"),
    (re.compile(r"(대학생|대학교\s*[1-4]\s*학년|재수생|특성화고|마이스터고|검정고시)"), lambda m: " ".join(m.group(1).split())),
    (re.compile(r"(중학생|고등학생|고딩|중딩)"), lambda m: {"고딩": "고등학생", "중딩": "중학생"}.get(m.group(1), m.group(1))),
]
SUBJECTS = ("국어", "수학", "영어", "과학", "물리", "화학", "생명과학", "생물", "지구과학", "사회", "역사", "한국사",
            "지리", "윤리", "경제", "정치", "미술", "음악", "체육", "기술", "가정", "정보", "코딩", "프로그래밍",
            "한문", "일본어", "중국어", "제2외국어")
_LIKE = re.compile(r"([가-힣A-Za-z0-9 ]{1,20}?)\s*(?:을|를|이|가)?\s*(?:정말|너무|진짜|많이)?\s*(좋아해|좋아하|좋아요|좋아|관심\s*(?:이)?\s*(?:있|많)|흥미|재밌어|재미있어)")
_GOOD_AT = re.compile(r"([가-힣A-Za-z0-9 ]{1,20}?)\s*(?:을|를|은|는|이|가)?\s*(?:좀|꽤|제일|가장)?\s*(잘해|잘하|자신\s*있|자신있|특기)")
_DISLIKE = re.compile(r"([가-힣A-Za-z0-9]{1,12}?)\s*(?:은|는|이|가|을|를)?\s*(?:이제|별로|정말|너무)?\s*(싫어|싫|말고|관심\s*없)")
_CONSTRAINTS = [
    (re.compile(r"대학\s*(?:은|을|에)?\s*(?:안|못)\s*(?:가|갈)"), "대학 진학 없이"),
    (re.compile(r"(?:빨리|바로|일찍)\s*(?:취업|돈\s*벌)"), "빨리 취업하고 싶음"),
    (re.compile(r"(?:돈|형편|학비)\s*(?:이|가)?\s*(?:없|부족|어렵)"), "경제적 여건"),
    (re.compile(r"부모님\s*(?:이|께서|은)?\s*(?:반대|싫어)"), "부모님 반대"),
    (re.compile(r"(?:성적|내신|공부)\s*(?:이|가|은)?\s*(?:낮|안\s*좋|별로|못)"), "성적 걱정"),
    (re.compile(r"(?:몸|건강)\s*(?:이|가)?\s*(?:약|안\s*좋)|장애"), "건강 고려"),
    (re.compile(r"(?:지방|시골)\s*(?:에|에서)\s*살"), "지역 고려"),
]
_STOP = {"그거", "그것", "이거", "저", "나", "제가", "내가", "저는", "나는", "뭐", "것", "거", "게", "일", "걸", "그림을"}


_SELF_INTRO = re.compile(r"(?:저는|전|나는|난|제가|내가)?\s*(?:지금|현재|올해)?\s*(?:{})\s*(?:이고|이구|인데요|인데|이에요|예요|입니다|이야|임|이라서|라서)?[\s,.!~]*")


def without_self_description(text: str) -> str:
    """`text` without the student's school and grade ("저는 고2인데", "중학생이에요"): what the profile keeps is
    not what the question is about (it would pull 학원강사 and 교사 into the search)."""
    school = "|".join(p.pattern for p, _ in _SCHOOL)
    out = re.sub(_SELF_INTRO.pattern.format(school), " ", text)
    return " ".join(out.split()) or text


@dataclass
class Profile:
    """slot -> list of {"value": str, "turn": int} (school holds at most one)."""

    slots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict | None) -> Profile:
        return cls({k: list(v) for k, v in (data or {}).items() if k in SLOT_LABELS})

    def to_json(self) -> dict:
        return {k: v for k, v in self.slots.items() if v}

    def values(self, slot: str) -> list[str]:
        return [v["value"] for v in self.slots.get(slot, [])]

    def set(self, slot: str, value: str, turn: int) -> None:
        if slot not in SLOT_LABELS:
            raise ValueError(f"unknown profile slot {slot!r}: use one of {', '.join(SLOT_LABELS)}")
        value = " ".join(value.split())[:60]
        if not value:
            return
        if slot == "school":
            self.slots["school"] = [{"value": value, "turn": turn}]
            return
        items = [v for v in self.slots.get(slot, []) if v["value"] != value]
        items.append({"value": value, "turn": turn})
        self.slots[slot] = items[-MAX_VALUES:]

    def remove(self, slot: str, value: str) -> bool:
        items = self.slots.get(slot, [])
        keep = [v for v in items if value not in v["value"]]
        self.slots[slot] = keep
        return len(keep) != len(items)

    def lines(self) -> tuple[str, ...]:
        """`label: a, b` lines for the prompt, school first."""
        return tuple(f"{SLOT_LABELS[s]}: {', '.join(self.values(s))}" for s in SLOT_LABELS if self.values(s))


def _clean_phrase(raw: str) -> str | None:
    words = [w for w in raw.split() if w not in _STOP and not any(p.search(w) for p, _ in _SCHOOL)]
    phrase = " ".join(words[-3:]).strip()
    phrase = re.sub(r"^(요즘|요새|원래|그냥|특히|예전부터)\s*", "", phrase)
    phrase = re.sub(r"(에서|에|을|를|이|가)$", "", phrase).strip()
    phrase = re.sub(r"(하는\s*것|하는\s*거|하기|하는걸|는\s*걸)$", "", phrase).strip()
    return phrase if 1 < len(phrase) <= 20 and phrase not in _STOP else None


def update_profile(profile: Profile, text: str, turn: int, occupations: list[str] = ()) -> list[str]:
    """Fill slots from one student message; returns the slots that changed."""
    changed: list[str] = []
    for pattern, fmt in _SCHOOL:
        m = pattern.search(text)
        if m:
            profile.set("school", fmt(m), turn)
            changed.append("school")
            break
    for m in _DISLIKE.finditer(text):
        word = m.group(1)
        for slot in ("subjects", "interests", "occupations"):
            if profile.remove(slot, word):
                changed.append(slot)
    for subject in SUBJECTS:
        if subject in text and re.search(subject + r"[을를이가은는도]?\s*(?:정말|너무|진짜|제일|가장)?\s*(좋아|재밌|재미|잘해|잘하|자신)", text):
            profile.set("subjects", subject, turn)
            changed.append("subjects")
    for m in _LIKE.finditer(text):
        phrase = _clean_phrase(m.group(1))
        if phrase and phrase.rstrip("도") not in SUBJECTS and phrase not in profile.values("subjects"):
            profile.set("interests", phrase, turn)
            changed.append("interests")
    for m in _GOOD_AT.finditer(text):
        phrase = _clean_phrase(m.group(1))
        if phrase and phrase not in SUBJECTS:
            profile.set("strengths", phrase, turn)
            changed.append("strengths")
    for pattern, label in _CONSTRAINTS:
        if pattern.search(text):
            profile.set("constraints", label, turn)
            changed.append("constraints")
    for name in occupations:
        profile.set("occupations", name, turn)
        changed.append("occupations")
    return list(dict.fromkeys(changed))
