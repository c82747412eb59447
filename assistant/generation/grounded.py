"""The `grounded` generator: no language model; composes a correct, friendly answer from the facts and passages
in the prompt parts (what the occupation does, education, certificates, related occupations), always naming its
source, and ends with a question back to the student. The offline default, and the fallback of the fact guard.
"""

from __future__ import annotations

import re
from typing import Iterator

from assistant.counselor.fact_block import block_fields
from assistant.counselor.prompt import FactBlock, Passage, PromptParts
from assistant.counselor.question_types import ANSWERABLE, question_types
from assistant.counselor.understanding import refers_back
from assistant.generation.base import GenerationRequest
from ingest.korean import first_sentence, josa
from ingest.occupation_text import SOURCE_NAME, passage_lead


def _source(block: FactBlock) -> str:
    return f"{SOURCE_NAME}({block.as_of}년 조사)" if block.as_of else SOURCE_NAME


def _josa(word: str, with_final: str, without: str) -> str:
    """The particle by the last syllable; after a non-Hangul ending (웹툰PD) the form without a final consonant."""
    return josa(word, with_final, without, unknown=without)


def _opening(intent: str, parts: PromptParts) -> str:
    if intent == "greeting":
        return "안녕하세요! 만나서 반가워요."
    if intent == "fit":
        return "스스로에게 맞는 길인지 고민하는 건 정말 중요한 일이에요."
    if intent == "explore":
        return "관심 있는 걸 이야기해 줘서 고마워요."
    if intent == "salary":
        return "현실적인 부분도 궁금하죠."
    if intent == "other":
        return "저는 진로와 직업 이야기를 돕는 상담 도우미라서, 그 이야기는 제가 잘 도와드리기 어려워요."
    return "좋은 질문이에요."


def _named(block: FactBlock, question: str) -> bool:
    q = "".join(question.split())
    names = [block.title, *block_fields(block).similar]
    return any(n and "".join(n.split()).split("(")[0] in q for n in names)


def _about(block: FactBlock, intent: str) -> list[str]:
    f = block_fields(block)
    name, src = block.title, _source(block)
    out: list[str] = []
    if intent == "certificate":
        if not f.certificates:
            out.append(f"{src}에는 {name}에 대해 등록된 자격증 정보가 없어요. 자격증이 꼭 필요하지 않은 직업일 수 있지만, "
                       "채용 공고에서 우대하는 자격이 있는지 확인해 보면 좋아요.")
        else:
            out.append(f"{src}에 따르면 {_josa(name, '과', '와')} 관련된 자격증은 {_josa(f.certificates_text, '이에요', '예요')}.")
    elif intent == "how_to_become":  # the path: education, then certificates, then how long it takes to learn
        out.extend(_about(block, "education"))
        out.extend(_about(block, "certificate")[:1])
    elif intent == "education":
        if f.education is not None:
            detail = f.education_detail if f.education_detail is not None else f.education
            out.append(f"{src}에 따르면 {_josa(name, '은', '는')} 보통 {f.education} 학력이 필요한 것으로 조사되어 있어요"
                       f" ({detail}).")
        else:
            out.append(f"{src}에는 {name}의 학력 정보가 없어요.")
        if f.skill:
            out.append(f"일을 익히는 데는 {f.skill} 정도가 걸린다고 해요.")
    elif intent == "related":
        related = ", ".join(f.related or f.similar)
        if related:
            out.append(f"{src}에 나온 {_josa(name, '과', '와')} 관련된 직업으로는 {related} 등이 있어요.")
        else:
            out.append(f"{src}에는 {name}의 관련 직업 정보가 없어요.")
    elif intent == "salary":
        out.append(f"{name}의 연봉이나 전망은 제가 가진 {SOURCE_NAME} 자료에 없어서 정확히 말씀드리기 어려워요. "
                   "워크넷(고용24)이나 커리어넷의 직업정보에서 최신 임금과 전망을 확인해 보세요.")
    else:  # duties, fit, explore
        if f.summary is not None:
            out.append(f"{src}에 따르면 {_josa(name, '은', '는')} {first_sentence(f.summary, 140)}")
        if f.education is not None:
            certs = f.certificates
            tail = f"관련 자격증은 {_josa(f.certificates_text, '이에요', '예요')}." if certs else "등록된 자격증 정보가 없어요."
            out.append(f"학력은 보통 {f.education}이고, {tail}")
    return out


def _explore(focus: FactBlock | None, passages: tuple[Passage, ...]) -> list[str]:
    options: list[tuple[str, str, str]] = []
    if focus is not None:
        options.append((focus.title, block_fields(focus).summary or "", _listed_source(focus.source_id, focus.title, focus.as_of)))
    options += [(p.title, passage_lead(p.text), _listed_source(p.source_id, p.title, p.as_of))
                for p in passages if p.title != (focus.title if focus else None)]
    if not options:
        return ["지금 가진 자료에서는 딱 맞는 직업을 찾지 못했어요. 어떤 일을 할 때 즐거운지 조금 더 이야기해 줄래요?"]
    lines = ["이야기한 내용과 관련 있는 직업을 몇 가지 찾아봤어요."]
    for title, text, source in options[:3]:
        lines.append(f"- {title}: {first_sentence(text, 110)} ({source})")
    return lines


def _listed_source(source_id: str, title: str, as_of: str | None) -> str:
    """Where a listed passage comes from: the 한국직업사전 (with its survey year) for the dictionary's documents,
    otherwise the document's own title and date (an uploaded document is never passed off as the dictionary)."""
    if source_id.startswith("job:"):
        return f"{SOURCE_NAME}, {as_of}년" if as_of else SOURCE_NAME
    return f"자료: {title}, {as_of}" if as_of else f"자료: {title}"


def _closing(intent: str, block: FactBlock | None, parts: PromptParts) -> str:
    if intent in ("greeting", "other"):
        return "요즘 어떤 일에 관심이 있는지, 또는 진로에 대해 어떤 고민이 있는지 편하게 이야기해 주세요."
    if block is None:
        return "이 중에 더 알고 싶은 직업이 있나요? 하는 일, 필요한 학력이나 자격증을 자세히 알려드릴게요."
    if intent == "certificate":
        return f"{block.title}의 하는 일이나 필요한 학력도 궁금한가요?"
    if intent in ("education", "how_to_become"):
        return "지금 다니는 학교에서 준비할 수 있는 것들도 같이 생각해 볼까요?"
    if intent == "related":
        return "이 중에 더 알아보고 싶은 직업이 있으면 말해 주세요."
    return f"{block.title}에 대해 자격증, 학력, 비슷한 직업 중 무엇이 더 궁금한가요?"


def _for_each(blocks: tuple[FactBlock, ...], asked: list[str]) -> list[str]:
    """The asked types for each of several occupations the student may mean, then the question which one."""
    lines = ["앞에서 말한 직업마다 정리해 볼게요."]
    for block in blocks:
        about = [line for t in asked for line in _about(block, t)[:1]]
        lines.append(f"- {block.title}: " + " ".join(about))
    lines.append("이 중 어느 직업이 궁금했는지 알려 주면 더 자세히 알려드릴게요.")
    return lines


def compose(parts: PromptParts) -> str:
    """The answer: each type the question asks (up to three) about the occupation in focus, or a list of matching
    occupations when there is none (or the turn explores without naming it)."""
    types = parts.asked or question_types(parts.question)
    intent = "greeting" if types[0] == "chitchat" else types[0]
    focus = parts.facts[-1] if parts.facts else None
    if parts.ask_which and len(parts.facts) > 1 and intent not in ("greeting", "other"):
        return "\n".join(_for_each(parts.facts, [t for t in types if t in ANSWERABLE][:2] or ["duties"]))
    if focus is None and intent in ANSWERABLE and refers_back(parts.question):  # "그거" with nothing to refer to
        return f"어떤 직업을 말하는지 알려 줄래요? 직업 이름이나 그 직업이 하는 일을 말해 주면 {SOURCE_NAME}에서 찾아 알려드릴게요."
    lines = [_opening(intent, parts)]
    if intent == "other":
        focus = None
    elif (intent == "explore" and (focus is None or not _named(focus, parts.question))) or (
            focus is None and intent not in ("greeting", "salary")):
        lines.extend(_explore(focus, parts.passages))
        focus = None
    elif focus is not None and intent != "greeting":
        asked = [t for t in types if t in ANSWERABLE][:3] or [intent]
        for t in asked:
            lines.extend(line for line in _about(focus, t) if line not in lines)
    elif intent == "salary":
        lines.append(f"연봉이나 전망은 제가 가진 {SOURCE_NAME} 자료에 없어요. 워크넷(고용24)이나 커리어넷에서 확인해 보세요.")
    lines.append(_closing(intent, focus if intent != "greeting" else None, parts))
    return "\n".join(lines)


class GroundedGenerator:
    """A Generator that reads the structured prompt parts instead of the prompt text."""

    name = "grounded"
    context_window = 8192

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 2)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = compose(request.parts)
        for piece in re.findall(r"\S+\s*", text):
            yield piece


__all__ = ["GroundedGenerator", "compose"]
