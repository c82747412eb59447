"""DERIVED training conversations: counselor answers composed from 한국직업사전 facts, with the facts in the prompt
exactly as at inference (`assistant.counselor.fact_block.fact_block`), plus chit-chat pairs (ChatbotData, MIT) for tone.

What a run on Gemma 270M taught us, and what this module therefore varies:
  - many phrasings per question type: what the job does, education, certificates, related jobs, fit (적성/흥미),
    and questions the facts cannot answer (salary, outlook, hours) -> "the data does not cover it, check X";
  - follow-ups that refer back without the name ("그 직업은 자격증 필요해?"), two or three turns deep;
  - occupations WITHOUT certificates: the answer says no certificate is registered (never "정보 없음" as a name);
  - a second, unrelated fact block before the one in focus, so the model learns to answer about the last one;
  - retrieved passages of OTHER occupations after the facts, as the counselor's prompt has them (mostly of the same
    classification, e.g. 가정전문간호사 beside 간호사, each with its own 학력/자격증 line): a model trained without
    them copied a passage's "대학원 이상" into an answer about 간호사;
  - answers of at most MAX_ANSWER_CHARS characters.
Every conversation is labelled derived with its provenance (job id, question types, template version).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Iterator

from assistant.counselor.fact_block import fact_block
from assistant.counselor.prompt import Passage, PromptParts, Turn
from assistant.retrieval.facts import OccupationFacts
from finetune.errors import FinetuneError
from finetune.formats import Conversation
from ingest.chunking import chunk_text
from ingest.jobs import OccupationRecord, parse_record, render_document
from ingest.korean import copula, eul, eun, first_sentence, i_ga, polite, wa
from ingest.occupation_text import SOURCE_NAME

GENERATOR = "finetune.derive/2"
MAX_ANSWER_CHARS = 300
PASSAGE_COUNTS, PASSAGE_WEIGHTS = (0, 1, 2, 3), (2, 2, 3, 3)  # the counselor shows up to 4
INTENTS = ("duties", "education", "certificate", "related", "fit", "unanswerable")
INTERESTS = ("그림 그리기", "사람 돕는 일", "컴퓨터", "운동", "글쓰기", "만들기", "수학", "음악", "요리", "동물",
             "과학 실험", "말하기", "기계 다루기", "꾸미기")
GRADES = ("중2", "중3", "고1", "고2", "고3")
UNKNOWN_TOPICS = (("연봉", "임금"), ("월급", "임금"), ("전망", "앞으로의 전망"), ("근무 시간", "근무 시간"),
                  ("취업", "취업률"))


# ---------------------------------------------------------------- sentences

def does(name: str, summary: str, src: str, limit: int = 130) -> str:
    """'{src} {name}은 …해요.' from the summary's first sentence, or a quote of it when it cannot be conjugated."""
    first = first_sentence(summary, limit)
    said = polite(first)
    return f"{src} {eun(name)} {said}" if said else f"{src} {name}의 하는 일은 '{first}'라고 소개되어 있어요."


def _listing(items: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (" 등" if len(items) > limit else "")


def bound(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """Cut an answer at the last sentence end within `limit` characters."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(p, 0, limit) for p in (". ", "요.", "다.", "?"))
    return text[: cut + 2].strip() if cut > limit // 2 else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------- questions and answers

def facts_of(rec: OccupationRecord) -> OccupationFacts:
    return OccupationFacts(
        occupation_id=0, code=rec.code, name=rec.name, external_id=rec.external_id, summary=rec.summary,
        education_level=rec.education_level, skill_years=rec.skill_years, certificates=rec.certificates,
        similar_names=rec.similar_names, related=rec.related, classification=rec.keco_name,
        survey_year=rec.survey_year)


def question(rng: random.Random, intent: str, n: str | None, interest: str, topic: str) -> str:
    """A student question; `n` is the occupation's name, or None for a follow-up that refers back."""
    if n is None:  # refers back to the occupation of the previous turn
        options = {
            "duties": ["그 직업은 구체적으로 무슨 일을 해요?", "그건 정확히 어떤 일을 하는 거야?", "그 일은 하루에 뭘 해요?",
                       "그거 하는 일 좀 더 자세히 알려 주세요."],
            "education": ["그럼 학력은 어느 정도 필요해요?", "그 일 하려면 대학 가야 해?", "그 직업은 공부 얼마나 해야 돼요?",
                          "그거 고졸로도 할 수 있어요?", "그럼 학교는 어디까지 다녀야 해?"],
            "certificate": ["그 직업은 자격증 필요해?", "그럼 자격증은요?", "그거 하려면 자격증 따야 돼요?",
                            "그 일 하는 데 필요한 자격증 있어?", "자격증도 있어야 하나요?"],
            "related": ["그거랑 비슷한 직업은 뭐 있어?", "그 직업 말고 비슷한 건 없어요?", "그럼 관련된 직업도 알려 주세요.",
                        "그 분야에 다른 직업도 있어?"],
            "fit": ["그 일이 저한테 맞을까요?", "그럼 나한테 어울릴까?", "그거 제 적성에 맞을지 모르겠어요.",
                    "그 직업은 어떤 사람한테 잘 맞아요?"],
            "unanswerable": [f"그 직업 {topic}은 어때요?", f"그럼 {topic}은 어느 정도예요?", f"그거 {topic}은 괜찮아요?"],
        }[intent]
        return rng.choice(options)
    options = {
        "duties": [f"{eun(n)} 무슨 일을 해요?", f"{i_ga(n)} 하는 일이 궁금해요.", f"{n}에 대해 알려 주세요.",
                   f"{n} 어떤 직업이야?", f"요즘 {n}에 관심이 생겼어요. 어떤 일을 하나요?"],
        "education": [f"{i_ga(n)} 되려면 대학 꼭 가야 해?", f"{i_ga(n)} 되려면 학력은 어느 정도 필요해요?",
                      f"{eun(n)} 공부를 얼마나 해야 돼요?", f"{n} 하려면 학교는 어디까지 나와야 해요?"],
        "certificate": [f"{n} 자격증 필요해?", f"{i_ga(n)} 되려면 어떤 자격증을 따야 하나요?",
                        f"{n} 관련 자격증 있어요?", f"{n} 준비하려면 자격증부터 따야 할까요?"],
        "related": [f"{wa(n)} 비슷한 직업은 뭐가 있어요?", f"{n} 말고 비슷한 일 하는 직업 알려줘.",
                    f"{wa(n)} 관련된 직업도 궁금해요."],
        "fit": [f"저는 {eul(interest)} 좋아하는데 {n} 저한테 맞을까요?",
                f"{n} 나한테 맞을까?", f"제 적성에 {i_ga(n)} 맞을지 모르겠어요.", f"{eun(n)} 어떤 사람한테 잘 맞아요?"],
        "unanswerable": [f"{n} {topic}은 얼마나 돼요?", f"{n} {topic}은 어때요?", f"{n} {topic} 알려 주세요."],
    }[intent]
    return rng.choice(options)


def answer(rng: random.Random, intent: str, f: OccupationFacts, topic_label: str) -> str:
    n = f.name
    src = rng.choice([f"{SOURCE_NAME}에 따르면", f"{SOURCE_NAME} 자료를 보면", "직업사전 자료에 따르면"])
    opening = rng.choice(["", "좋은 질문이에요. ", "궁금했군요. ", "관심 가져 줘서 고마워요. "])
    edu = f.education_short
    if intent == "duties":
        body = does(n, f.summary, src) if f.summary else f"제가 가진 자료에는 {n}의 하는 일 설명이 없어요."
        tail = rng.choice([f" {n}의 학력이나 자격증도 알려 드릴까요?", " 더 궁금한 점이 있으면 편하게 물어봐 주세요.", ""])
    elif intent == "education":
        if edu:
            body = f"{src} {eun(n)} 보통 '{edu}' 수준의 학력이 필요한 것으로 조사되어 있어요."
            if f.skill_years and rng.random() < 0.6:
                body += f" 일을 익히는 데는 {f.skill_years} 정도가 걸린다고 해요."
        else:
            body = f"아쉽게도 제가 가진 자료에는 {n}의 학력 정보가 없어요. 커리어넷이나 워크넷(고용24)의 직업정보에서 확인해 보세요."
        tail = rng.choice([" 지금 학교에서 준비할 수 있는 것도 같이 생각해 봐요.", " 관련 학과도 함께 찾아보면 좋아요.", ""])
    elif intent == "certificate":
        if f.certificates:
            body = f"{src} {n} 관련 자격증은 {copula(_listing(f.certificates))}."
            tail = rng.choice([" 응시 자격과 시험 일정은 큐넷(Q-Net)에서 확인할 수 있어요.",
                               " 모두 꼭 따야 하는 건 아니니 관심 있는 것부터 알아보세요.", ""])
        else:
            body = rng.choice([
                f"{SOURCE_NAME}에는 {n}에 대해 등록된 자격증이 없어요.",
                f"{src} {n}에 등록된 자격증은 없어요.",
            ])
            tail = rng.choice([" 자격증보다는 관련 경험을 쌓는 게 도움이 될 수 있어요.",
                               " 채용 공고에서 우대하는 자격이 있는지 확인해 보면 좋아요.", ""])
    elif intent == "related":
        names = f.related or f.similar_names
        if names:
            body = f"{src} {wa(n)} 관련된 직업으로는 {i_ga(_listing(names))} 있어요."
            tail = rng.choice([" 이 중에 더 알아보고 싶은 직업이 있으면 말해 주세요.", ""])
        else:
            body = f"제가 가진 자료에는 {n}의 관련 직업이 나와 있지 않아요."
            tail = " 관심 있는 분야를 알려 주면 비슷한 직업을 같이 찾아볼게요."
    elif intent == "fit":
        opening = rng.choice(["스스로에게 맞는 길인지 고민하는 건 정말 중요해요. ", "그런 고민 정말 좋아요. "])
        what = does(n, f.summary, rng.choice(["자료를 보면", "직업사전에 따르면"]), 110) if f.summary else ""
        body = f"{what} 이런 일을 할 때 즐거울지 떠올려 보세요." if what else f"{n}의 하는 일을 먼저 알아보면 좋아요."
        tail = rng.choice([" 직업 체험이나 관련 동아리 활동으로 직접 경험해 보는 것도 좋은 방법이에요.",
                           " 학교 진로 선생님과 흥미 검사를 해 보는 것도 도움이 돼요."])
    else:  # unanswerable: the facts do not cover it
        opening = rng.choice(["", "현실적인 부분도 궁금하죠. "])
        body = f"{n}의 {topic_label} 정보는 제가 가진 {SOURCE_NAME} 자료에 없어서 정확히 말씀드리기 어려워요."
        tail = rng.choice([f" 워크넷(고용24)이나 커리어넷의 직업정보에서 최신 {topic_label} 정보를 확인해 보세요.",
                           " 고용24나 커리어넷에서 확인해 보는 걸 추천해요."])
    return bound(opening + body + tail)


def _plan(rng: random.Random, f: OccupationFacts) -> list[str]:
    depth = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
    intents = rng.sample(INTENTS, depth)
    if not f.certificates and "certificate" not in intents and rng.random() < 0.5:
        intents[-1] = "certificate"  # the case a small model gets wrong: no certificate registered
    return intents


def passage_of_record(rng: random.Random, rec: OccupationRecord) -> Passage:
    """A passage of `rec` as retrieval returns it: one chunk of its ingested text, most often the last one, which
    carries its 학력/자격증 line."""
    doc = render_document(rec, "")
    chunks = chunk_text(doc.text)
    chunk = chunks[-1] if rng.random() < 0.6 else rng.choice(chunks)
    return Passage(rec.external_id, rec.name, doc.as_of, chunk.text, 0.0)


def job_conversation(rng: random.Random, f: OccupationFacts, other: OccupationFacts | None, source: str,
                     line: int, passages: tuple[Passage, ...] = ()) -> Conversation:
    intents = _plan(rng, f)
    interest = rng.choice(INTERESTS)
    turns: list[Turn] = []
    for k, intent in enumerate(intents):
        topic, label = rng.choice(UNKNOWN_TOPICS)
        named = k == 0 or rng.random() < 0.3
        turns.append(Turn("student", question(rng, intent, f.name if named else None, interest, topic)))
        turns.append(Turn("counselor", answer(rng, intent, f, label)))
    profile: list[str] = []
    if rng.random() < 0.4:
        profile += [f"학년: {rng.choice(GRADES)}", f"관심 분야: {interest}"]
    if rng.random() < 0.5:
        profile.append(f"생각 중인 직업: {f.name}")  # what the counselor's profile memory adds
    blocks = ((fact_block(other),) if other is not None else ()) + (fact_block(f),)
    parts = PromptParts(profile_lines=tuple(profile), facts=blocks, passages=passages)
    provenance = {"generator": GENERATOR, "kind": "job_dictionary", "job": f.external_id, "name": f.name,
                  "intents": intents, "distractor": other.external_id if other else None,
                  "passages": [p.source_id for p in passages], "file": f"{source}:{line}"}
    return Conversation(f"derived:{f.code}:{line}", "derived:job", parts, tuple(turns), True, provenance)


def read_job_records(path: Path) -> list[tuple[int, OccupationRecord]]:
    if not path.is_file():
        raise FinetuneError(f"{path}: no such file — give the job dictionary JSONL (data/job_dictionary/*.jsonl)")
    out = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                out.append((lineno, parse_record(json.loads(line))))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # `ingest jobs` reports malformed records; here they are just skipped
    return out


def _distractors(rng: random.Random, jobs: list[tuple[int, OccupationRecord]], by_class: dict[str, list[int]],
                 i: int, avoid: set[str]) -> tuple[Passage, ...]:
    want = rng.choices(PASSAGE_COUNTS, weights=PASSAGE_WEIGHTS)[0]
    same = [j for j in by_class.get(jobs[i][1].keco_name or "", []) if j != i]
    rng.shuffle(same)
    picks = same[:want] + [rng.randrange(len(jobs)) for _ in range(max(0, want - len(same)))]
    recs = [jobs[j][1] for j in picks if jobs[j][1].code != jobs[i][1].code and jobs[j][1].external_id not in avoid]
    return tuple(passage_of_record(rng, r) for r in recs)


def derive_job_conversations(path: Path, *, limit: int | None = None, seed: int = 42) -> Iterator[Conversation]:
    """One derived conversation per occupation (the first `limit` occupations, in a seeded order)."""
    rng = random.Random(seed)
    jobs = read_job_records(path)
    by_class: dict[str, list[int]] = {}
    for k, (_, rec) in enumerate(jobs):
        by_class.setdefault(rec.keco_name or "", []).append(k)
    order = list(range(len(jobs)))
    rng.shuffle(order)
    for i in order[: limit if limit is not None else len(order)]:
        line, rec = jobs[i]
        f = facts_of(rec)
        other = facts_of(jobs[rng.randrange(len(jobs))][1]) if len(jobs) > 1 and rng.random() < 0.3 else None
        if other is not None and other.code == f.code:
            other = None
        avoid = {f.external_id} | ({other.external_id} if other else set())
        yield job_conversation(rng, f, other, path.name, line, _distractors(rng, jobs, by_class, i, avoid))


def chitchat_conversations(path: Path, *, limit: int | None = 1000, seed: int = 42,
                           labels: tuple[str, ...] = ("0",)) -> Iterator[Conversation]:
    """Q/A pairs of ChatbotData.csv (label 0 = everyday talk by default) as one-turn conversations, no context."""
    if not path.is_file():
        raise FinetuneError(f"{path}: no such file — give data/chatbot_data/ChatbotData.csv")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = [(i, r) for i, r in enumerate(csv.DictReader(fh), 2)
                if (r.get("label") or "").strip() in labels and r.get("Q") and r.get("A")]
    random.Random(seed).shuffle(rows)
    for line, r in rows[: limit if limit is not None else len(rows)]:
        turns = (Turn("student", r["Q"].strip()), Turn("counselor", r["A"].strip()))
        yield Conversation(f"chitchat:{line}", "chitchat", PromptParts(), turns, True,
                           {"generator": GENERATOR, "kind": "chatbot_data", "file": f"{path.name}:{line}",
                            "license": "MIT"})
