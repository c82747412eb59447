"""The fact guard: an LLM answer may only name certificates, education levels and figures that appear in the
facts and passages it was given, and the levels and certificates it gives an occupation must be that occupation's.
Small tuned models do invent such names, and copy them from the wrong passage; an answer that does is replaced by
the `grounded` answer for that turn (the counselor counts it and queues it for review).

`SentenceGuard` applies the same checks while the answer streams: a sentence is shown only once the answer up to
and including it passes, so the student reads the model's answer as it is generated, and at the first sentence that
fails the counselor stops the model and finishes with the grounded answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from assistant.counselor.fact_block import block_fields
from assistant.counselor.prompt import PromptParts
from ingest.occupation_text import NO_CERTIFICATE, parse_facts

_CERT = re.compile(r"[가-힣A-Za-z0-9()·]{1,20}?(?:산업기사|기능사|기능장|기술사|기사|자격증|면허|[1-3]급)")
_EDU = re.compile(r"전문대졸|대졸|고졸|중졸|초졸|대학원|석사|박사|학사")
_LEVEL = re.compile(r"전문대졸|(?<!전문)대졸|고졸|중졸|초졸|대학원")  # an education level claimed in an answer
_NO_CERT = re.compile(r"자격증(?:이|은|는)?\s*(?:정보가\s*)?(?:따로\s*)?없")
_NUMBER = re.compile(r"\d[\d,.]*\d|\d")
_ALLOWED_NUMBERS = {"109", "1388", "112", "117", "119", "1577-0199"}
_GENERIC = {"자격증", "면허", "관련 자격증", "국가자격증", "국가기술자격증", "민간자격증", "기사", "1급", "2급", "3급"}


@dataclass
class GuardReport:
    ok: bool
    unsupported: list[str] = field(default_factory=list)


def _compact(text: str) -> str:
    return "".join(text.split())


def context_text(parts: PromptParts) -> str:
    chunks = [line for b in parts.facts for line in (b.title, *b.lines)] + [f"{p.title} {p.text}" for p in parts.passages]
    chunks += [parts.summary, *parts.profile_lines, parts.question, *(t.text for t in parts.history)]
    return "\n".join(chunks)


def check_answer(answer: str, parts: PromptParts,
                 occupation_mentions: Callable[[str], Iterable[str]] | None = None) -> GuardReport:
    """Claims in `answer` that the context does not support. `occupation_mentions(text)` (optional) names the
    occupations a text mentions, to check those too."""
    context = context_text(parts)
    ctx = _compact(context)
    unsupported: list[str] = []
    for m in _CERT.finditer(answer):
        name = m.group(0).strip("()")
        if name not in _GENERIC and _compact(name) not in ctx:
            unsupported.append(f"certificate:{name}")
    for m in _EDU.finditer(answer):
        if m.group(0) not in ctx and not (m.group(0) == "대졸" and "대졸" in ctx):
            unsupported.append(f"education:{m.group(0)}")
    unsupported += [f"education:{level}" for level in misattributed_levels(answer, parts)]
    unsupported += [f"certificate:{name}" for name in misattributed_certificates(answer, parts)]
    for m in _NUMBER.finditer(answer):
        num = m.group(0)
        if len(num.replace(",", "").replace(".", "")) >= 2 and num not in _ALLOWED_NUMBERS and num not in context:
            unsupported.append(f"number:{num}")
    if occupation_mentions is not None:
        known = set(occupation_mentions(context))
        for name in occupation_mentions(answer):
            if name not in known and _compact(name) not in ctx:
                unsupported.append(f"occupation:{name}")
    return GuardReport(not unsupported, list(dict.fromkeys(unsupported)))


def _about(answer: str, parts: PromptParts) -> list[tuple[str, str, str]]:
    """(name, education, certificates) of the occupations the answer is about: those of the facts and passages it
    names, or, when it names none, the occupation in focus (the last fact block). Needs `parts.facts`."""
    known: list[tuple[str, str, str]] = []
    for b in parts.facts:  # a block that states no certificate line: none registered
        f = block_fields(b)
        known.append((b.title, f.education or "", f.certificates_text or NO_CERTIFICATE))
    for p in parts.passages:  # a passage may be a chunk without the fact sentences
        f = parse_facts(p.text)
        known.append((p.title, f.education or "", f.certificates_text))
    text = _compact(answer)
    return [k for k in known if k[0] and _compact(k[0].split("(")[0]) in text] or [known[len(parts.facts) - 1]]


def misattributed_certificates(answer: str, parts: PromptParts) -> list[str]:
    """Certificate claims that do not hold for the occupations the answer is about: a certificate named that is not
    theirs (a small model listed a passage's 롤러운전기능사 for 드론조종사), or "no certificate" said of an occupation
    that has some (it told a student 사회복지사 needs none)."""
    if not parts.facts:
        return []
    about = _about(answer, parts)
    theirs = _compact(" ".join(certs for _, _, certs in about))
    wrong = [m.group(0).strip("()") for m in _CERT.finditer(answer)]
    wrong = [n for n in wrong if n not in _GENERIC and _compact(n) not in theirs]
    if _NO_CERT.search(answer) and all(certs and certs != NO_CERTIFICATE for _, _, certs in about):
        wrong.append("none")
    return list(dict.fromkeys(wrong))


def misattributed_levels(answer: str, parts: PromptParts) -> list[str]:
    """Education levels the answer gives that belong to none of the occupations it is about. Those are the
    occupations of the facts and passages whose names the answer mentions, or, when it names none, the occupation in
    focus (the last fact block). A level in another occupation's passage is no support: a small model copied
    가정전문간호사's "대학원 이상" into an answer about 간호사."""
    levels = list(dict.fromkeys(m.group(0) for m in _LEVEL.finditer(answer)))
    if not levels or not parts.facts:
        return []
    allowed = {m.group(0) for _, edu, _ in _about(answer, parts) for m in _LEVEL.finditer(edu)}
    return [level for level in levels if level not in allowed]


_SENTENCE_END = re.compile(r"[.!?。…~]+[\"')\]]*(?=\s)|\n")  # the end of a sentence once whitespace follows it


class SentenceGuard:
    """Feed it an LLM's pieces as they come; it returns the text that may be shown now: whole sentences, each once
    the answer up to and including it passes `check_answer` and does not repeat the instructions. After the first
    sentence that fails, `failed` holds the report and nothing more is shown. `finish()` at the end of the
    generation checks what is left after the last sentence end."""

    def __init__(self, parts: PromptParts, persona: str,
                 occupation_mentions: Callable[[str], Iterable[str]] | None = None) -> None:
        self.parts, self.persona, self.mentions = parts, persona, occupation_mentions
        self.shown = ""  # what passed, as shown
        self.generated = ""  # everything the model produced (for evaluation and review)
        self.failed: GuardReport | None = None
        self._pending = ""

    def _passes(self, text: str) -> bool:
        answer = self.shown + text
        report = check_answer(answer, self.parts, self.mentions)
        if leaks_instructions(answer, self.persona):
            report = GuardReport(False, [*report.unsupported, "instructions"])
        if not report.ok:
            self.failed = report
        return report.ok

    def feed(self, piece: str) -> str:
        self.generated += piece
        if self.failed is not None:
            return ""
        self._pending += piece
        out = []
        while (m := _SENTENCE_END.search(self._pending)) is not None:
            sentence = self._pending[: m.end()]
            if not self._passes(sentence):
                return "".join(out)
            self.shown += sentence
            out.append(sentence)
            self._pending = self._pending[m.end():]
        return "".join(out)

    def finish(self) -> str:
        """The rest after the last sentence end, when it passes (call once the model has stopped)."""
        rest, self._pending = self._pending, ""
        if self.failed is not None or not rest.strip() or not self._passes(rest):
            return ""
        self.shown += rest
        return rest


def leaks_instructions(answer: str, persona: str, window: int = 24) -> bool:
    """Whether the answer repeats any `window`-character stretch of the instructions (a prompt-injection leak)."""
    a, p = _compact(answer), _compact(persona)
    return any(p[i : i + window] in a for i in range(0, max(1, len(p) - window + 1), 4))
