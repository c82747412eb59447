"""Hypothesis strategies for personal data as students and operators type it: phone numbers, 주민등록번호, e-mails,
card and account numbers and addresses, in many spacings, inside Korean sentences (tests/test_pii_property.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

SEPARATORS = st.sampled_from(["-", " ", "", ".", " - ", "  "])


@dataclass(frozen=True)
class Pii:
    kind: str
    text: str  # as typed

    @property
    def needle(self) -> str:
        """What must not survive anywhere: the digits of a number (the separators may change), or the whole text."""
        digits = "".join(ch for ch in self.text if ch.isdigit())
        return digits if self.kind in ("phone", "rrn", "card", "account") else self.text

    def survives_in(self, stored: str) -> bool:
        if self.kind in ("phone", "rrn", "card", "account"):
            return self.needle in "".join(ch for ch in stored if ch.isdigit())
        return self.needle in stored


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


@st.composite
def mobile(draw) -> Pii:
    sep = draw(SEPARATORS)
    head = draw(st.sampled_from(["010", "011", "016", "017", "019", "+82 10", "+8210", "0082-10"]))
    return Pii("phone", f"{head}{sep}{draw(_digits(4))}{sep}{draw(_digits(4))}")


@st.composite
def landline(draw) -> Pii:
    sep = draw(st.sampled_from(["-", " ", ")"]))
    area = draw(st.sampled_from(["02", "031", "032", "051", "062", "070", "(02", "(031"]))
    if area.startswith("(") != (sep == ")"):
        sep = ") " if area.startswith("(") else "-"
    return Pii("phone", f"{area}{sep}{draw(_digits(draw(st.sampled_from([3, 4]))))}-{draw(_digits(4))}")


@st.composite
def resident_number(draw) -> Pii:
    yy, mm, dd = draw(_digits(2)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
    sep = draw(st.sampled_from(["-", " - ", "", " "]))
    return Pii("rrn", f"{yy}{mm:02d}{dd:02d}{sep}{draw(st.integers(1, 4))}{draw(_digits(6))}")


@st.composite
def email(draw) -> Pii:
    local = draw(st.from_regex(r"[a-z][a-z0-9._]{0,10}[a-z0-9]", fullmatch=True))
    domain = draw(st.from_regex(r"[a-z]{2,10}", fullmatch=True))
    tld = draw(st.sampled_from(["com", "co.kr", "net", "ac.kr", "kr", "org"]))
    return Pii("email", f"{local}@{domain}.{tld}")


@st.composite
def card(draw) -> Pii:
    sep = draw(st.sampled_from(["-", " ", ""]))
    return Pii("card", sep.join(draw(_digits(4)) for _ in range(4)))


@st.composite
def account(draw) -> Pii:
    groups = draw(st.sampled_from([(3, 3, 6), (3, 6, 5), (4, 4, 4), (6, 2, 6), (3, 2, 6)]))
    sep = draw(st.sampled_from(["-", ""]))
    return Pii("account", sep.join(draw(_digits(n)) for n in groups))


@st.composite
def address(draw) -> Pii:
    city = draw(st.sampled_from(["서울시", "서울특별시", "부산광역시", "경기도 수원시", "인천시", "대구광역시"]))
    district = draw(st.sampled_from(["강남구", "해운대구", "팔달구", "연수구", "수성구", "마포구"]))
    road = draw(st.sampled_from(["테헤란로", "해운대로", "월드컵로", "중앙대로", "봉은사로", "세종대로"]))
    number = f"{draw(st.integers(1, 999))}" + draw(st.sampled_from(["", f"-{draw(st.integers(1, 99))}"]))
    unit = draw(st.sampled_from(["", f" {draw(st.integers(101, 120))}동 {draw(st.integers(101, 2505))}호"]))
    spaced = draw(st.sampled_from([" ", "  "]))
    return Pii("address", f"{city} {district}{spaced}{road} {number}{unit}")


ANY_PII = st.one_of(mobile(), landline(), resident_number(), email(), card(), account(), address())

SENTENCES = st.sampled_from([
    "제 번호는 {}이에요", "{} 로 연락 주세요", "연락처: {} 입니다.", "혹시 {}  여기로 문자 줄 수 있어요?",
    "엄마 번호 {}, 아빠는 몰라요", "저는 {}에 살아요", "{}", "상담 선생님께 {} 알려드렸어요",
    "학교 끝나고 {} 으로 와", "제 거예요 {}\n다음 줄",
])


@st.composite
def sentence_with_pii(draw) -> tuple[str, Pii]:
    pii = draw(ANY_PII)
    return draw(SENTENCES).format(pii.text), pii
