"""The rules of turn understanding: patterns of what a turn asks about (`rule_matches`, features of the learned
question-type classifier in `question_types.py`; `rule_intent`, the rules' own decision, kept as the peer it is
measured against) and whether a turn refers back to the occupation already in focus (`refers_back`: "그 직업은
자격증 필요해?")."""

from __future__ import annotations

import re

INTENTS: list[tuple[str, re.Pattern[str]]] = [
    ("salary", re.compile(r"연봉|월급|수입|돈\s*(?:을|은|이)?\s*(?:얼마|많이|잘)|급여|페이|벌어|버는|전망|미래|없어지|사라지|대체될|취업률")),
    ("certificate", re.compile(r"자격증|자격|면허|시험\s*(?:봐|쳐|보|쳐야)|라이선스")),
    ("education", re.compile(r"학력|대학|학교|학과|전공|졸업|공부|배워|배우|진학|과\s*가야|무슨\s*과|어느\s*과|학원|유학")),
    ("related", re.compile(r"비슷한|관련된?\s*직업|다른\s*직업|유사|대신|어떤\s*직업들|직업\s*(?:더|또)|말고\s*(?:다른|또)")),
    ("duties", re.compile(r"무슨\s*일|뭐\s*(?:해|하는|를\s*해)|뭘\s*해|하는\s*일(?:은|이\s*뭐|이\s*어떤|이야|이에요)|어떤\s*일(?:을|해|하)|일은\s*뭐|뭐하는|업무")),
    ("fit", re.compile(r"맞을까|맞을지|어울|적성|잘\s*맞|할\s*수\s*있을까|괜찮을까|어때")),
]
GREETING = re.compile(r"^\s*(안녕|반가|고마워|감사|ㅎㅇ|하이|hello\b|hi\b)", re.IGNORECASE)
BACK_REFERENCE = re.compile(r"그\s*직업|그거|그것|그\s*일|거기|그\s*분야|그\s*쪽|그럼|그러면|그건")


def rule_matches(question: str) -> list[str]:
    """The names of every pattern the turn matches (intents, "greeting", "back")."""
    found = [name for name, pattern in INTENTS if pattern.search(question)]
    if GREETING.search(question):
        found.append("greeting")
    if BACK_REFERENCE.search(question):
        found.append("back")
    return found


def rule_intent(question: str) -> str:
    """The first intent whose pattern the turn matches, else "greeting" for a short greeting, else "explore"."""
    for name, pattern in INTENTS:
        if pattern.search(question):
            return name
    if GREETING.search(question) and len(question) < 30:
        return "greeting"
    return "explore"


def refers_back(question: str) -> bool:
    return bool(BACK_REFERENCE.search(question))
