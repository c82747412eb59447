"""Personal-data redaction: phones, 주민등록번호, e-mail, addresses, card/account numbers, and no false hits."""

from __future__ import annotations

import dataclasses

import pytest

from ingest.redaction import PLACEHOLDERS, PiiSpan, find_pii, redact
from assistant.safety.crisis import CATEGORIES
from assistant.safety.scripts import crisis_reply

REDACTED = [
    ("전화번호는 010-1234-5678이야", "전화번호는 [전화번호]이야"),
    ("01012345678로 연락줘", "[전화번호]로 연락줘"),
    ("010 1234 5678", "[전화번호]"),
    ("010.1234.5678", "[전화번호]"),
    ("+82 10-1234-5678", "[전화번호]"),
    ("+821012345678 이에요", "[전화번호] 이에요"),
    ("학교 번호 02-123-4567", "학교 번호 [전화번호]"),
    ("(02) 123-4567", "[전화번호]"),
    ("031-123-4567로 전화", "[전화번호]로 전화"),
    ("1588-1234 고객센터", "[전화번호] 고객센터"),
    ("15441234", "[전화번호]"),
    ("주민번호 900101-1234567", "주민번호 [주민등록번호]"),
    ("9001011234567 이거 맞아?", "[주민등록번호] 이거 맞아?"),
    ("이메일 hong.gildong@naver.com 으로 보내줘", "이메일 [이메일] 으로 보내줘"),
    ("student_01@school.go.kr", "[이메일]"),
    ("카드 1234-5678-9012-3456", "카드 [카드번호]"),
    ("1234 5678 9012 3456", "[카드번호]"),
    ("계좌 110-123-456789 로 보내", "계좌 [계좌번호] 로 보내"),
    ("국민은행 123456-01-234567", "국민은행 [계좌번호]"),
    ("3333012345678901234", "[계좌번호]"),
    ("서울시 강남구 테헤란로 12", "[주소]"),
    ("서울특별시 강남구 테헤란로 123, 래미안아파트 101동 1203호에 살아요", "[주소]에 살아요"),
    ("경기도 성남시 분당구 불정로 6", "[주소]"),
    ("역삼동 123-4에 살아", "[주소]에 살아"),
    ("강남구 역삼동 825 근처", "[주소] 근처"),
    ("아파트 101동 1203호야", "[주소]야"),
    ("테헤란로 152 건물", "[주소] 건물"),
]

UNCHANGED = [
    "3학년 2반이고 수학 95점, 2024년 모의고사 3등급이에요",
    "2024-03-15에 시험 봐요",
    "2024.03.15",
    "109나 1388에 전화해 봤어, 위험하면 112",
    "1577-0199에 전화했어",
    "학교폭력은 117",
    "우리가 3-2로 이겼어",
    "친구 집으로 2시에 가",
    "진로 3개 중에 고민",
    "앞으로 3년 동안 공부",
    "연봉 35000000원이래",
    "체육활동 3-2 했어",
    "처음으로 1등 했어",
    "10:30에 만나",
    "수능 D-100",
    "컴퓨터로 3차원 가상현실을 만든다",
    "신림동에 살아요",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_personal_data_is_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_numbers_are_kept(text: str) -> None:
    assert redact(text) == text
    assert find_pii(text) == []


def test_find_pii_reports_kinds_and_offsets() -> None:
    text = "내 번호 010-1234-5678, 메일 a@b.co, 주민 900101-1234567"
    spans = find_pii(text)
    assert [s.kind for s in spans] == ["phone", "email", "rrn"]
    assert [text[s.start:s.end] for s in spans] == ["010-1234-5678", "a@b.co", "900101-1234567"]
    assert all(s.kind in PLACEHOLDERS for s in spans)


def test_several_kinds_in_one_message() -> None:
    text = "연락처 01098765432 이메일 me@test.com 주소 서울시 마포구 월드컵로 10"
    assert redact(text) == "연락처 [전화번호] 이메일 [이메일] 주소 [주소]"


def test_pii_span_is_frozen() -> None:
    span = PiiSpan("phone", 0, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.start = 1  # type: ignore[misc]


def test_text_without_pii_is_returned_as_is() -> None:
    assert redact("") == ""
    assert redact("간호사가 되고 싶어요") == "간호사가 되고 싶어요"


@pytest.mark.parametrize("category", CATEGORIES)
def test_crisis_replies_survive_redaction(category: str) -> None:
    reply = crisis_reply(category)
    assert redact(reply) == reply


def test_find_pii_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        find_pii(12345)  # type: ignore[arg-type]
