"""What ingest checks in a document before it is stored: personal data and instruction-like passages.

    redact_document(doc)     the title and text with personal data replaced (`ingest.redaction`); an operator
                             setting (JINRO_REDACT_UPLOADS=false) keeps them
    instruction_flag(text)   why a passage reads like an instruction to a model or a request for credentials
                             ("이전 지시를 무시하고 …", "system:", "ignore previous instructions", "비밀번호를 알려
                             주세요"), or None

A flagged chunk is stored with its reason (`Chunk.flag`): retrieval leaves it out, so students never see it, and
reviewers list it (`GET /v1/knowledge/flagged`, `ingest status`). The patterns are a floor, not a model: they were
written from the attack class (prompt injection in uploaded documents), and a test proves that none fires on any
record of the bundled 한국직업사전 (whose duties say "지시에 따라 …" often).
"""

from __future__ import annotations

import dataclasses
import re

from ingest.documents import SourceDocument
from ingest.redaction import redact

_ORDERS = r"(?:지시|명령|지침|규칙|설정|프롬프트|안내\s*사항)"
_DROP = r"(?:무시\s*(?:하고|해|하세요|하라|하십시오|할\s*것)|잊어\s*(?:버려|라|줘|주세요)|따르지\s*말)"  # told, not told of
_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("asks to ignore earlier instructions", re.compile(
        rf"(?:이전|앞|위|기존|모든|지금까지|원래)[^\n.]{{0,12}}{_ORDERS}[^\n.]{{0,8}}{_DROP}"
        rf"|{_ORDERS}[은는을를]?\s*(?:모두|전부|다)?\s*{_DROP}")),
    ("asks to ignore earlier instructions", re.compile(
        r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier|preceding)\s+"
        r"(?:instructions?|prompts?|rules|messages?)", re.IGNORECASE)),
    ("gives the model a new role", re.compile(
        r"(?:너는|당신은|넌)\s*이제(?:부터)?\s|지금부터\s*(?:너는|당신은|넌)\s|\byou\s+are\s+now\b", re.IGNORECASE)),
    ("speaks as a chat role or names the system prompt", re.compile(
        r"(?m)^\s*(?:system|assistant|user|시스템)\s*[:：]|(?:시스템|system)\s*(?:프롬프트|prompt)"
        r"|〈\|[a-z_]+\|〉|\[/?INST\]|#{2,}\s*(?:instruction|system)\b", re.IGNORECASE)),
    ("asks for a password or credentials", re.compile(
        r"(?:비밀\s*번호|패스워드|password|인증\s*번호|OTP|보안\s*카드)[을를이가]?\s*(?:\S+\s*){0,3}?"
        r"(?:(?:알려|보내|말해|적어)\s*(?:주세요|줘|주십시오|주시기|달라)|입력\s*하(?:세요|십시오|시오))", re.IGNORECASE)),
)


def instruction_flag(text: str) -> str | None:
    """The reason `text` reads like an instruction to a model (or a credentials request), with the words; or None."""
    for reason, pattern in _CUES:
        m = pattern.search(text)
        if m:
            return f"{reason}: \"{m.group(0).strip()[:60]}\""
    return None


def redact_document(doc: SourceDocument) -> SourceDocument:
    """`doc` with personal data in its title and text replaced by typed placeholders ([전화번호], [이메일], ...)."""
    title, text = redact(doc.title), redact(doc.text)
    if title == doc.title and text == doc.text:
        return doc
    return dataclasses.replace(doc, title=title, text=text)
