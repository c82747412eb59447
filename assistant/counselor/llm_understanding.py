"""Optional LLM turn understanding (`JINRO_UNDERSTANDING=llm`): the turn's LLM proposes the question types of a
student's message and the occupation it is about, and the proposal is checked before anything uses it.

    reader = LLMTurnReader(generator, lookup=retriever.lookup_facts, search=retriever.search)
    frame = reader.read("병원에서 주사 놓는 사람 되려면 자격증 뭐 따야 돼?")
    frame.types       ("certificate",)          the LLM's main type (its first known one), and the further types
                                                 it lists that the classifier also finds
    frame.occupation  OccupationFacts(간호사)     only a name the DB knows (an alias, or retrieval's best match
                                                 when its name agrees with the proposal); never the LLM's word alone
    frame.source      "llm" | "classifier"      who decided the types

The LLM answers one JSON object, `{"types": [...], "occupation": "..." | null}`. Whatever it does not settle is
decided as without it: types the classifier (`question_types.py`) when the reply has no known type or no JSON, no
occupation when its name is not in the DB (the counselor's own lookup and retrieval then run as usual). A failing
generator is the turn's error, as for the answer itself: there is no silent fallback from a broken model server.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from assistant.counselor.prompt import PromptParts
from assistant.counselor.question_types import TYPES, question_types
from assistant.generation.base import GenerationRequest, Generator
from assistant.retrieval.facts import OccupationFacts
from assistant.retrieval.hybrid import RetrievalResult

INSTRUCTIONS = (
    "You label one message a Korean student wrote to a career counselor. Reply with one JSON object and nothing "
    'else: {"types": [...], "occupation": "..."}.\n'
    "types: every question the message asks, from: certificate (자격증, 면허), education (학력, 전공, 대학, 학과), "
    "how_to_become (되는 방법, 준비), duties (하는 일), salary (연봉, 월급, 전망), related (비슷한 직업, 다른 직업), "
    "fit (적성, 나한테 맞는지), explore (어떤 직업이 있는지), chitchat (인사, 잡담), other.\n"
    "occupation: the Korean name of the occupation the message is about, as the Korean Dictionary of Occupations "
    "names it, also when the message only describes the work; null when the message is about no occupation or "
    "only refers back to one (그 직업, 그거).\n"
    "Most messages ask one thing: list only the types the message really asks.\n"
    "Examples:\n"
    '메시지: 간호사 되려면 무슨 자격증 따야 돼?\nJSON: {"types": ["certificate"], "occupation": "간호사"}\n'
    '메시지: 비행기 운전하는 사람은 대학 어디 나와야 해요?\nJSON: {"types": ["education"], "occupation": "항공기조종사"}\n'
    '메시지: 저는 요리가 좋은데 어떤 직업이 있을까요?\nJSON: {"types": ["explore"], "occupation": null}\n'
    '메시지: 그 직업은 돈 많이 벌어?\nJSON: {"types": ["salary"], "occupation": null}\n'
    '메시지: 안녕하세요!\nJSON: {"types": ["chitchat"], "occupation": null}'
)
ALIASES = {"salary_outlook": "salary", "how-to-become": "how_to_become", "chit-chat": "chitchat",
           "chit_chat": "chitchat", "outlook": "salary"}
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TurnFrame:
    types: tuple[str, ...]  # the asked types, the main one first
    occupation: OccupationFacts | None  # checked against the DB
    proposed: str | None  # the occupation name the LLM proposed, before the check
    check: str  # how the proposal was checked: "alias", "retrieval", "not in the DB", "none proposed"
    source: str  # who decided the types: "llm" or "classifier"
    reply: str  # the LLM's words, for the review and for evaluation
    ms: float  # what reading the turn cost


def parse_reply(reply: str) -> tuple[tuple[str, ...], str | None]:
    """(known types in the order given, proposed occupation name or None) of an LLM reply; ((), None) when it holds
    no JSON object."""
    for match in _OBJECT.finditer(reply):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        raw = obj.get("types") or []
        raw = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        types = tuple(dict.fromkeys(t for t in (ALIASES.get(str(x).strip().lower(), str(x).strip().lower())
                                                for x in raw) if t in TYPES))
        name = obj.get("occupation")
        name = _SPACE.sub(" ", name).strip() if isinstance(name, str) else None
        return types, (name if name and name.lower() not in ("null", "none") else None)
    return (), None


def _compact(name: str) -> str:
    return _SPACE.sub("", name)


def agrees(proposed: str, found: str) -> bool:
    """Whether a DB occupation name is the proposed one: equal without spaces, or one contains the other (간호사 /
    전문간호사) and the shorter is at least two characters."""
    a, b = _compact(proposed), _compact(found)
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= 2 and short in long)


class LLMTurnReader:
    """Reads a turn with `generator` (an LLM); `lookup(text)` finds the occupations a text names (aliases, SQL) and
    `search(query, k=…)` retrieves passages (hybrid search) for a described name the aliases do not know."""

    def __init__(self, generator: Generator, *, lookup: Callable[[str], list[OccupationFacts]],
                 search: Callable[..., RetrievalResult] | None = None,
                 facts_of: Callable[[Sequence[int]], list[OccupationFacts]] | None = None,
                 max_new_tokens: int = 48) -> None:
        self.generator, self.lookup, self.search, self.facts_of = generator, lookup, search, facts_of
        self.max_new_tokens = max_new_tokens

    def request(self, text: str, earlier: Sequence[str] = ()) -> GenerationRequest:
        context = "".join(f"이전 메시지: {t}\n" for t in earlier[-1:])
        prompt = f"{INSTRUCTIONS}\n\n{context}메시지: {text}\nJSON:"
        return GenerationRequest(prompt, PromptParts(persona=INSTRUCTIONS, question=text), self.max_new_tokens,
                                 ("\n\n",))

    def read(self, text: str, earlier: Sequence[str] = ()) -> TurnFrame:
        clock = time.perf_counter()
        reply = "".join(self.generator.stream(self.request(text, earlier))).strip()
        types, proposed = parse_reply(reply)
        source = "llm" if types else "classifier"
        learned = question_types(text)
        # the LLM's main question decides; a further type it lists stands only where the classifier asks it too
        # (a small model lists every type that could apply: on the benchmark's dev half it rarely gave just one)
        types = (types[0], *(t for t in types[1:] if t in learned)) if types else learned
        occupation, check = self.check(proposed)
        return TurnFrame(types, occupation, proposed, check, source, reply,
                         round((time.perf_counter() - clock) * 1000, 1))

    def check(self, proposed: str | None) -> tuple[OccupationFacts | None, str]:
        """The DB's occupation for a proposed name, and how it was found."""
        if not proposed:
            return None, "none proposed"
        named = [f for f in self.lookup(proposed) if agrees(proposed, f.name)]
        if named:
            exact = [f for f in named if _compact(f.name) == _compact(proposed)]
            return (exact or sorted(named, key=lambda f: len(f.name)))[0], "alias"
        if self.search is not None and self.facts_of is not None:
            result = self.search(proposed, k=3, mode="hybrid+facts")
            for hit in result.hits[:3]:
                if agrees(proposed, hit.title):
                    found = self.facts_of([hit.document_id])
                    if found:
                        return found[0], "retrieval"
        return None, "not in the DB"
