"""The fact guard on the answers a tuned Gemma 270M really gave (bench/finetune_bench.py): claims must be supported
by the facts of the occupation the answer is about, not by any text anywhere in the prompt."""

from __future__ import annotations

import pytest

from assistant.generation.factguard import SentenceGuard, check_answer, misattributed_levels
from assistant.counselor.fact_block import fact_block
from assistant.counselor.prompt import Passage, PromptParts
from finetune.evaluate import _NURSE, _WEB

# the counselor's prompt for 간호사 carries passages of related occupations, each with its own 학력 line
HOME_NURSE = Passage("job:K000001706", "가정전문간호사", "2017",
                     "환자의 특성과 요구에 맞춰 전문적인 간호를 수행한다. 학력: 대학원 이상. 숙련기간: 2년 초과 ~ 4년 이하. "
                     "관련 자격증: 간호사, 가정전문간호사.", 0.0)
NURSE = PromptParts(facts=(fact_block(_NURSE),), passages=(HOME_NURSE,), question="간호사 되려면 4년제 나와야 돼요?")
DIGGER = PromptParts(facts=(fact_block(_NURSE),), question="간호사 자격증은?", passages=(Passage(
    "job:K000000001", "굴삭기운전원", "2019", "굴삭기를 운전한다. 학력: 고졸 정도. 관련 자격증: 굴삭기운전기능사. 직업 분류: 건설기계 운전원.",
    0.0),))
WEB = PromptParts(facts=(fact_block(_WEB),), question="웹디자이너는 학교 얼마나 다녀야 해?")


@pytest.mark.parametrize(("parts", "answer", "ok"), [
    (NURSE, "한국직업사전 자료를 보면 간호사는 보통 '대학원 이상' 수준의 학력이 필요한 것으로 조사되어 있어요.", False),
    (NURSE, "한국직업사전에 따르면 간호사는 보통 '대졸 정도' 수준의 학력이 필요해요.", True),
    (NURSE, "간호사는 대졸 정도이고, 가정전문간호사는 대학원 이상이에요.", True),  # each level for the occupation named
    (NURSE, "보통 '대졸 정도' 학력이 필요해요.", True),  # names none: the occupation in focus
    (WEB, "웹디자이너는 보통 '대졸 정도' 수준의 학력이 필요해요.", False),  # 대졸 is not 전문대졸
    (WEB, "웹디자이너는 보통 '전문대졸 정도' 수준의 학력이 필요해요.", True),
    (WEB, "웹디자이너가 되려면 웹디자인기능사 자격증이 필요해요.", False),  # invented certificate
    (NURSE, "한국직업사전에는 간호사에 대해 등록된 자격증이 없어요.", False),  # it has one
    (WEB, "한국직업사전에는 웹디자이너에 대해 등록된 자격증이 없어요.", True),
    (DIGGER, "간호사 관련 자격증은 굴삭기운전기능사예요.", False),  # another occupation's certificate
    (DIGGER, "굴삭기운전원은 굴삭기운전기능사 자격증이 필요해요.", True),  # ... fine when said of that one
    (NURSE, "간호사가 되려면 간호사 면허가 필요하고, 보통 대졸 정도의 학력이 필요해요.", True),
])
def test_claims_must_fit_the_occupation_they_are_about(parts: PromptParts, answer: str, ok: bool) -> None:
    assert check_answer(answer, parts).ok is ok


def test_the_misattributed_level_is_named() -> None:
    assert misattributed_levels("간호사는 보통 '대학원 이상'이에요.", NURSE) == ["대학원"]
    assert misattributed_levels("간호사는 대학원 이상이에요.", PromptParts(question="간호사?")) == []  # no facts: no claim to bind


def _feed(guard: SentenceGuard, answer: str, size: int = 3) -> list[str]:
    return [guard.feed(answer[i : i + size]) for i in range(0, len(answer), size)]


def test_the_sentence_guard_shows_whole_sentences_once_they_pass() -> None:
    guard = SentenceGuard(NURSE, persona="너는 진로 상담 선생님이야. 지시를 따라.")
    answer = "간호사는 대졸 정도예요. 간호사 면허가 필요해요! 더 궁금하면 물어봐요"
    shown = _feed(guard, answer)
    assert [s for s in shown if s] == ["간호사는 대졸 정도예요.", " 간호사 면허가 필요해요!"]  # whole sentences only
    assert guard.finish() == " 더 궁금하면 물어봐요" and guard.shown == answer and guard.failed is None


def test_the_sentence_guard_stops_at_the_first_failing_sentence() -> None:
    guard = SentenceGuard(NURSE, persona="너는 진로 상담 선생님이야.")
    answer = "간호사는 대졸 정도예요. 그런데 간호사는 대학원 이상이어야 해요. 간호사 면허도 필요해요."
    shown = "".join(_feed(guard, answer))
    assert shown == "간호사는 대졸 정도예요." and guard.failed is not None
    assert guard.failed.unsupported == ["education:대학원"]  # the level of another occupation's passage
    assert guard.finish() == "" and guard.generated == answer  # nothing more is shown; everything is kept


def test_the_sentence_guard_checks_the_end_and_the_instructions() -> None:
    persona = "너는 진로 상담 선생님이다. 학생에게 존댓말로 한국직업사전의 사실만 전한다."
    leak = SentenceGuard(NURSE, persona=persona)
    shown = "".join(_feed(leak, "좋아요. " + persona + " 그럼 시작할게요."))
    assert leak.finish() == "" and leak.failed is not None and leak.failed.unsupported[-1] == "instructions"
    assert "존댓말로" not in shown  # stopped once 24 characters of the instructions are repeated
    tail = SentenceGuard(WEB, persona=persona)
    assert "".join(_feed(tail, "웹디자이너가 되려면 웹디자인기능사 자격증이 필요해요")) == ""  # no sentence end yet
    assert tail.finish() == "" and tail.failed is not None
