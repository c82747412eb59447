"""The evaluation sets of the turn-understanding work, made by a written procedure instead of by hand.

    python -m assistant.evaluation.procedural build    # data/eval/procedural_[hard_]{single,dialogue}_{dev,blind}.jsonl
    python -m assistant.evaluation.procedural check    # the files are exactly what the procedure makes

The procedure (data/eval/README.md says the same in prose):
1. Occupations. 150 from `POPULAR` (occupations students commonly ask about, matched to the dictionary by their
   exact name or their name with a qualifier, `수의사` -> `수의사(일반)`), sampled with seed 14; and 150 drawn
   uniformly over the dictionary's KECO major groups (a group uniformly, then a record in it; seed 15). None twice.
2. Two single-turn questions per occupation (600), each of a question type drawn for it: certificate, education,
   duties, related, how-to-become, explore (the occupation described from its summary, never named) or
   salary/outlook (which the dictionary cannot answer: the answer must point elsewhere). One scenario of 2-3 turns
   for two occupations in three (200): a description then a back-reference, a name then a back-reference, profile
   talk then the question, or another occupation first and then "아니 그거 말고 …".
3. Wording: fixed templates per type in 존댓말 and 반말; then, by the seeded draw, spaces removed, common
   misspellings (될려면, 되 for 돼), or a trailing ㅠㅠ / ㅋㅋ.
4. Expected strings come from the record's facts only: its certificates (or "등록된 자격증"), its education level
   (대졸, 고졸, ...), the longest words of its summary, its similar and related names, or, for salary/outlook, where
   to look (커리어넷, 고용24, 워크넷). Gold is the occupation's external id.
5. Round 2 (`procedural_hard_*`, seed 17, same occupations and split), the failure classes issue 14 names: one turn
   that describes the occupation and asks a fact ("… 사람 되려면 무슨 자격증 따야 돼?"), then a back-reference asking
   another type; profile talk before the question in the same turn; and an interest taken from another occupation's
   classification, then the named occupation, then a back-reference.
6. Split by occupation: blind when int(sha256(code)[:8], 16) % 3 == 0, else dev. A blind file, once written, is
   never rewritten (`build` refuses; the hook flags edits) and the evaluation commands print only its aggregates.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ingest.jobs import OccupationRecord, read_jobs
from ingest.occupation_text import education_short

ROOT = Path(__file__).resolve().parents[2]
DICTIONARY = ROOT / "data" / "job_dictionary"
OUT = ROOT / "data" / "eval"
SEED_POPULAR, SEED_UNIFORM, SEED_TEXT, SEED_HARD = 14, 15, 16, 17

POPULAR = tuple("""간호사 치과의사 한의사 수의사 물리치료사 작업치료사 임상병리사 응급구조사 간호조무사 사회복지사 임상심리사
초등학교교사 유치원교사 보육교사 특수교사 경찰관 소방관 교도관 판사 검사 변호사 법무사 변리사 세무사 회계사 관세사 노무사
감정평가사 보험설계사 사서 작곡가 배우 성우 무용가 웹디자이너 인테리어디자이너 게임프로그래머 웹프로그래머 데이터분석가
빅데이터전문가 네트워크엔지니어 데이터베이스관리자 기계공학기술자 도시계획가 항공기조종사 선장 택시운전원 버스운전원
한식조리사 양식조리사 중식조리사 일식조리사 바리스타 관광통역안내원 미용사 메이크업아티스트 기상연구원 천문학연구원
물리학연구원 심리학연구원 광고기획자 경영컨설턴트 비서 외교관 프로게이머 드론조종사 안경사 음악치료사 미술치료사 놀이치료사
직업상담사 청소년지도사 게임기획자 웹마스터 바텐더 푸드스타일리스트 집배원 택배원 진단방사선사 임상치과위생사 급식영양사
영상기자 방송아나운서 촬영기사 통역가 학예연구사 대중가수 의상디자이너 시스템소프트웨어엔지니어 건축설계사 선박기관사 주방장
제빵원 손톱미용사 피부미용사 반려동물미용사 화훼장식가 직업운동선수 운동선수트레이너 디지털크리에이터 언어재활사 쇼핑호스트
부동산중개인 한약사 병원약사 약국약사 취재기자 사진기자 드라마작가 영화감독 뮤지컬배우 게임그래픽디자이너 게임시나리오작가
데이터엔지니어 인공지능엔지니어 항공교통관제사 사회교사 수학교사 국어교사 과학교사 체육교사 음악교사 미술교사 보건교사 해양경찰관
국회의원 손해사정사 보험계리사 펀드매니저 웨딩플래너 임상영양사 치과기공사 동물사육사 동물조련사 산림기술자 기상예보관
지질학연구원 천문학연구원 유전공학연구원 소설가 시인 웹툰작가 만화가 일러스트레이터 캐릭터디자이너 가구디자이너 조명디자이너
무대디자이너 패션모델 분장사 스포츠에이전트 심판 경호원 집배원 전기기술자 타일공 도배공 제과원 플로리스트 조경기술자
여행가이드 호텔리어 소믈리에 파티시에""".split())

TYPES = ("certificate", "education", "duties", "related", "how_to_become", "explore", "salary_outlook")
ELSEWHERE = ("커리어넷", "고용24", "워크넷")


@dataclass(frozen=True)
class Occupation:
    record: OccupationRecord
    popular: bool

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def spoken_name(self) -> str:
        """The name as a student says it: without the dictionary's qualifier (수의사(일반) -> 수의사)."""
        return re.sub(r"\(.*?\)", "", self.record.name).strip() or self.record.name


def in_blind_half(code: str) -> bool:
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) % 3 == 0


def load_records() -> list[OccupationRecord]:
    return [item[1] for path in sorted(DICTIONARY.glob("*.jsonl")) for item in read_jobs(path)
            if isinstance(item, tuple)]


def sample_occupations(records: list[OccupationRecord], n_popular: int = 150, n_uniform: int = 150) -> list[Occupation]:
    by_name = {r.name: r for r in sorted(records, key=lambda r: r.code)}
    by_base: dict[str, OccupationRecord] = {}
    for r in sorted(records, key=lambda r: r.code):
        by_base.setdefault(re.sub(r"\(.*?\)", "", r.name), r)
    resolved = [r for r in dict.fromkeys(by_name.get(n) or by_base.get(n) for n in POPULAR) if r is not None]
    popular = random.Random(SEED_POPULAR).sample(resolved, min(n_popular, len(resolved)))
    taken = {r.code for r in popular}
    groups: dict[str, list[OccupationRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.code):
        if r.code not in taken and r.keco_code:
            groups[r.keco_code[:2]].append(r)
    rng, uniform = random.Random(SEED_UNIFORM), []
    keys = sorted(groups)
    while len(uniform) < n_uniform and any(groups.values()):
        key = rng.choice([k for k in keys if groups[k]])
        uniform.append(groups[key].pop(rng.randrange(len(groups[key]))))
    return [Occupation(r, True) for r in popular] + [Occupation(r, False) for r in uniform]


# ------------------------------------------------------------------------------------------------ wording

def description(occ: Occupation) -> str | None:
    """The occupation told by what it does, its name removed: the summary's first clause as a noun phrase."""
    summary = (occ.record.summary or "").replace(occ.name, "").replace(occ.spoken_name, "")
    m = re.match(r"\s*(.{8,70}?)(?:하고|하며|하거나|한다|하는)[\s,.]", summary)
    return f"{m.group(1).strip(' ,')}하는" if m else None


def _topic(occ: Occupation, rng: random.Random) -> str:
    return occ.spoken_name if rng.random() < 0.85 else occ.name


TEMPLATES: dict[str, tuple[str, ...]] = {
    "certificate": ("{n} 되려면 무슨 자격증 따야 돼?", "{n}는 자격증이 필요한가요?", "{n} 하려면 어떤 자격증이 있어야 해요?",
                    "{n} 자격증 뭐 있어?"),
    "education": ("{n} 되려면 대학 꼭 가야 돼?", "{n}는 학력이 어느 정도 필요해요?", "{n} 하려면 대학 나와야 하나요?",
                  "{n} 고졸도 할 수 있어?"),
    "duties": ("{n}는 무슨 일을 해요?", "{n}가 하는 일이 뭐야?", "{n}는 어떤 일을 하나요?", "{n} 하는 일 알려줘"),
    "related": ("{n}랑 비슷한 직업 뭐 있어?", "{n}와 비슷한 직업을 알려주세요", "{n} 말고 비슷한 일은 뭐가 있어요?"),
    "how_to_become": ("{n} 되려면 어떻게 해야 돼요?", "{n}가 되고 싶은데 뭘 준비해야 해?", "{n} 되는 방법 알려주세요"),
    "explore": ("{d} 일을 하고 싶어요. 어떤 직업이 있어요?", "{d} 사람은 뭐라고 불러?", "{d} 직업이 궁금해요"),
    "salary_outlook": ("{n} 연봉은 얼마나 돼요?", "{n}는 돈 많이 벌어?", "{n} 전망은 어때요?", "{n} 앞으로 괜찮은 직업이야?"),
}
BACK_REFERENCE: dict[str, tuple[str, ...]] = {
    "certificate": ("그 직업은 자격증이 필요해요?", "그거 되려면 자격증 뭐 따야 돼?"),
    "education": ("그 직업은 대학 나와야 해요?", "그거 학력은 어느 정도 필요해?"),
    "related": ("그거랑 비슷한 직업은 뭐가 있어?", "그 직업과 비슷한 일도 알려주세요"),
    "duties": ("그 직업은 정확히 무슨 일을 해요?", "그거 하는 일이 뭐야?"),
}
PROFILE_TALK = ("저는 고2인데 진로가 고민이에요", "저는 중학생이고 만드는 걸 좋아해요", "고1이에요. 사람 돕는 일이 좋아요",
                "저 수학은 잘 못하는데 과학은 좋아해요")


_PARTICLES = (("는", "은", "는"), ("가", "이", "가"), ("랑", "이랑", "랑"), ("와", "과", "와"), ("를", "을", "를"))


def with_particles(text: str, name: str) -> str:
    """The particles after `name` agreeing with its last syllable (집배원은, 간호사는). Not `ingest.korean.josa`, which
    looks past a "(qualifier)": the frozen blind files were made by this rule, and the procedure must remake them."""
    last = name[-1]
    closed = "가" <= last <= "힣" and (ord(last) - 0xAC00) % 28 != 0
    for written, after_consonant, after_vowel in _PARTICLES:
        text = text.replace(name + written, name + (after_consonant if closed else after_vowel))
    return text


def styled(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return text.replace(" ", "")
    if roll < 0.3:
        return text.replace("되려면", "될려면").replace("돼", "되")
    if roll < 0.4:
        return text.rstrip("?") + rng.choice(("?ㅠㅠ", " ㅋㅋ", "??"))
    return text


def expected(occ: Occupation, qtype: str) -> list[str]:
    r = occ.record
    if qtype == "certificate":
        return list(r.certificates) or ["등록된 자격증"]
    if qtype == "education":
        level = education_short(r.education_level)
        return [level.replace(" 정도", "")] if level else []
    if qtype == "duties":
        words = sorted({w.strip(",.()") for w in (r.summary or "")[:60].split() if len(w.strip(",.()")) >= 3
                        and occ.spoken_name not in w}, key=lambda w: (-len(w), w))
        return words[:3]
    if qtype == "related":
        return list(dict.fromkeys([*r.similar_names, *r.related]))[:10]
    if qtype == "how_to_become":
        level = education_short(r.education_level)
        return [*([level.replace(" 정도", "")] if level else []), *r.certificates]
    if qtype == "explore":
        return [occ.spoken_name, *r.similar_names]
    return list(ELSEWHERE)


def _types_for(occ: Occupation, rng: random.Random) -> list[str]:
    usable = [t for t in TYPES if expected(occ, t) and (t != "explore" or description(occ))]
    return rng.sample(usable, min(2, len(usable)))


def single_questions(occ: Occupation, rng: random.Random) -> list[dict]:
    out = []
    for qtype in _types_for(occ, rng):
        topic = _topic(occ, rng)
        text = styled(with_particles(rng.choice(TEMPLATES[qtype]).format(n=topic, d=description(occ) or ""), topic), rng)
        out.append({"name": f"{occ.record.code}-{qtype}", "q": text, "turns": [text], "type": qtype,
                    "gold": [occ.record.external_id], "answer_any": expected(occ, qtype),
                    "popular": occ.popular})
    return out


def scenario(occ: Occupation, other: Occupation, rng: random.Random) -> dict | None:
    qtype = rng.choice([t for t in BACK_REFERENCE if expected(occ, t)] or [None])
    if qtype is None:
        return None
    name, back = _topic(occ, rng), rng.choice(BACK_REFERENCE[qtype])
    kinds = ["name_then_back_reference", "profile_then_question", "switch_then_question"]
    if description(occ):
        kinds.append("description_then_back_reference")
    kind = rng.choice(kinds)
    if kind == "description_then_back_reference":
        turns = [f"{description(occ)} 일을 하고 싶어요. 어떤 직업이 있어요?", back]
    elif kind == "name_then_back_reference":
        turns = [rng.choice((f"{name}에 대해 알려주세요", f"{name} 어때?", f"{name}가 궁금해요")), back]
    elif kind == "profile_then_question":
        turns = [rng.choice(PROFILE_TALK), f"{name}에 관심이 있어요", back]
    else:
        first = _topic(other, rng)
        turns = [with_particles(f"{first}는 무슨 일 해요?", first), f"아니 그거 말고 {TEMPLATES[qtype][0].format(n=name)}"]
    turns = [with_particles(t, name) for t in turns]
    return {"name": f"{occ.record.code}-{kind}-{qtype}", "turns": [styled(t, rng) for t in turns], "type": qtype,
            "kind": kind, "gold": [occ.record.external_id], "answer_any": expected(occ, qtype), "popular": occ.popular}


def round_one(i: int, occ: Occupation, occupations: list[Occupation], rng: random.Random) -> tuple[list, list]:
    singles = single_questions(occ, rng)
    item = scenario(occ, occupations[(i * 7 + 3) % len(occupations)], rng) if i % 3 != 2 else None
    return singles, [item] if item is not None else []


def build_round(records: list[OccupationRecord], prefix: str, seed: int,
                items: Callable[[int, Occupation, list[Occupation], random.Random], tuple[list, list]]) -> dict[str, list[dict]]:
    """`<prefix>_{single,dialogue}_{dev,blind}`: what `items` makes for each sampled occupation, split by its code."""
    occupations = sample_occupations(records)
    rng = random.Random(seed)
    sets: dict[str, list[dict]] = {f"{prefix}_{k}_{s}": [] for k in ("single", "dialogue") for s in ("dev", "blind")}
    for i, occ in enumerate(occupations):
        split = "blind" if in_blind_half(occ.record.code) else "dev"
        singles, dialogues = items(i, occ, occupations, rng)
        sets[f"{prefix}_single_{split}"] += singles
        sets[f"{prefix}_dialogue_{split}"] += dialogues
    return sets


# -- round 2: the failure classes of issue 14 (a turn that describes and asks; profile talk before the question) --
HARD_ASK: dict[str, tuple[str, ...]] = {
    "certificate": ("{d} 사람 되려면 무슨 자격증 따야 돼?", "{d} 일을 하려면 자격증이 필요한가요?"),
    "education": ("{d} 일 하려면 대학 나와야 해?", "{d} 사람이 되고 싶은데 학력은 어느 정도 필요해요?"),
    "how_to_become": ("{d} 사람 되려면 어떻게 해야 돼요?",),
}
FOLLOW_UP = {"certificate": "education", "education": "certificate", "how_to_become": "related"}


def _interest(other: Occupation) -> str:
    """Something a student says they like, taken from another occupation's classification (기자 및 언론 전문가 ->
    기자 및 언론)."""
    name = re.sub(r"\[.*?\]", "", other.record.keco_name or other.spoken_name)
    return re.sub(r"\s*(관련|전문가|종사자|종사원|기술자|및)\s*$", "", name).strip() or other.spoken_name


def round_two(i: int, occ: Occupation, occupations: list[Occupation], rng: random.Random) -> tuple[list, list]:
    """Single turns and scenarios of the failure classes, for one occupation (only types its facts answer)."""
    other = occupations[(i * 11 + 5) % len(occupations)]
    singles, dialogues, d, name = [], [], description(occ), _topic(occ, rng)
    asks = [t for t in HARD_ASK if expected(occ, t)]
    base = {"gold": [occ.record.external_id], "popular": occ.popular}
    if d and asks:
        qtype = rng.choice(asks)
        text = styled(rng.choice(HARD_ASK[qtype]).format(d=d), rng)
        singles.append({"name": f"{occ.record.code}-describe_and_ask-{qtype}", "q": text, "turns": [text],
                        "type": qtype, "kind": "describe_and_ask", "answer_any": expected(occ, qtype), **base})
        follow = FOLLOW_UP[qtype]
        if expected(occ, follow) and rng.random() < 0.5:
            turns = [text, styled(rng.choice(BACK_REFERENCE[follow]), rng)]
            dialogues.append({"name": f"{occ.record.code}-describe_and_ask_then_back_reference-{follow}",
                              "turns": turns, "type": follow, "kind": "describe_and_ask_then_back_reference",
                              "answer_any": expected(occ, follow), **base})
    qtype = rng.choice([t for t in ("certificate", "education", "duties", "related") if expected(occ, t)] or ["duties"])
    if not expected(occ, qtype):
        return singles, dialogues
    question = with_particles(rng.choice(TEMPLATES[qtype]).format(n=name, d=""), name)
    text = styled(f"{rng.choice(PROFILE_TALK)}. {question}", rng)
    singles.append({"name": f"{occ.record.code}-profile_then_ask-{qtype}", "q": text, "turns": [text], "type": qtype,
                    "kind": "profile_then_ask", "answer_any": expected(occ, qtype), **base})
    if rng.random() < 0.5 and qtype in BACK_REFERENCE:
        turns = [f"저는 {_interest(other)} 쪽에 관심이 많아요", with_particles(f"{name}는 무슨 일을 해요?", name),
                 rng.choice(BACK_REFERENCE[qtype])]
        dialogues.append({"name": f"{occ.record.code}-interest_then_named_then_back_reference-{qtype}",
                          "turns": [styled(t, rng) for t in turns], "type": qtype,
                          "kind": "interest_then_named_then_back_reference", "answer_any": expected(occ, qtype), **base})
    return singles, dialogues


def _lines(items: list[dict]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command not in ("build", "check"):
        print("usage: python -m assistant.evaluation.procedural build|check", file=sys.stderr)
        return 2
    records = load_records()
    sets = {**build_round(records, "procedural", SEED_TEXT, round_one),
            **build_round(records, "procedural_hard", SEED_HARD, round_two)}
    status = 0
    for name, items in sets.items():
        path = OUT / f"{name}.jsonl"
        if command == "build" and not (path.exists() and "blind" in name):
            path.write_text(_lines(items), encoding="utf-8")
        same = path.exists() and path.read_text(encoding="utf-8") == _lines(items)
        status |= 0 if same else 1
        print(f"{path.relative_to(ROOT)}: {len(items)} items, {len({i['gold'][0] for i in items})} occupations"
              + ("" if same else " — DIFFERS from what the procedure makes"))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
