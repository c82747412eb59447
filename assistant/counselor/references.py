"""Back-references to occupations the conversation has shown, resolved against the dialogue state.

Right after an answer that listed several occupations (`Memory.shown`, set from the answer's citations):
- "두 번째 거", "첫 번째 직업", "마지막 거", "2번" pick one of them by its place;
- "그 직업", "그거", "아까 그거" could mean any of them: the counselor answers the asked type for each of them (up
  to three) and asks which one was meant (`Reference.kind == "list"`), instead of assuming the first.
Otherwise "그 직업" means the occupation in focus (the last in facts memory), as before. A turn that names an
occupation refers to that one, never to the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from assistant.counselor.citations import Citation
from assistant.counselor.understanding import refers_back

MAX_LISTED = 3
_ORDINALS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"첫\s*번?\s*째|첫\s*번|1\s*번|처음\s*(?:거|것|꺼|직업|말한)"), 0),
    (re.compile(r"두\s*번\s*째|둘\s*째|두\s*번|2\s*번"), 1),
    (re.compile(r"세\s*번\s*째|셋\s*째|세\s*번|3\s*번"), 2),
    (re.compile(r"마지막\s*(?:거|것|꺼|직업|에|꺼요)?"), -1),
)


@dataclass(frozen=True)
class Reference:
    kind: str  # "pick": one listed occupation by its place; "list": any of the listed ones
    external_ids: tuple[str, ...]


def ordinal(text: str) -> int | None:
    """The place a turn names ("두 번째 거" -> 1, "마지막 거" -> -1), or None."""
    for pattern, place in _ORDINALS:
        if pattern.search(text):
            return place
    return None


def resolve(text: str, shown: Sequence[dict[str, Any]], turn_no: int, *, names_one: bool) -> Reference | None:
    """What the turn refers to among the occupations the previous answer listed, or None (no list in play, the
    turn names an occupation itself, or it does not refer back)."""
    listed = [s for s in shown if s.get("turn") == turn_no - 1]
    if names_one or not listed:
        return None
    place = ordinal(text)
    if place is not None and -len(listed) <= place < len(listed):
        return Reference("pick", (listed[place]["external_id"],))
    if len(listed) >= 2 and refers_back(text):
        return Reference("list", tuple(s["external_id"] for s in listed[:MAX_LISTED]))
    return None


def shown_by(citations: Sequence[Citation], turn_no: int) -> list[dict[str, Any]]:
    """The occupations an answer listed: its dictionary citations, in order, when there are several (an answer
    about one occupation lists none)."""
    jobs = [c for c in citations if c.external_id.startswith("job:")]
    if len(jobs) < 2:
        return []
    return [{"external_id": c.external_id, "title": c.title, "turn": turn_no} for c in jobs[:MAX_LISTED]]
