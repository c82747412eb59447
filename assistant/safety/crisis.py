"""Crisis screening for every student turn: three levels, two layers, the last few turns.

    level     what the counselor does
    crisis    the fixed safe script (assistant.safety.scripts), careful mode for the session, an urgent review
    concern   distress without a clear crisis signal: a fixed check-in (how are you, 1388) before the ordinary
              answer and a review; when the classifier's crisis probability is in its *watch* band (above the
              threshold that catches 98% of dev crisis messages, below the one ChatbotData's false-positive budget
              allows) the session also goes into careful mode
    none      the ordinary answer

Two layers decide, and either one is enough for a crisis (the decision favours recall):
- the rules (assistant.safety.rules): weighted cues, explainable, a floor that tests pin down;
- the classifier (assistant.safety.classifier): a linear model over character/jamo/word n-grams, mixed with a small
  network over the message's multilingual-e5-small vector when an `embedder` is given, trained on the crisis bank (data/safety/);
  it catches indirect phrasings the cues never saw.
Careful mode (after an earlier crisis in the session) lowers both thresholds.  With `context` (the student's
previous turns, oldest first) the last `CONTEXT_TURNS` turns are also read together, so a signal split over turns
("너무 지쳤어" … "아끼던 물건 동생한테 다 줬어") is caught; the window counts only when the current message itself
shows distress (concern-or-crisis probability of at least `CONTEXT_GATE`), so an earlier crisis turn does not
re-fire the script on every later question.

This is a screening aid with a bias towards recall, not a diagnosis.  A hit must lead to a human counselor
check-in; a miss must never be read as "the student is safe".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from assistant.errors import SafetyModelError
from assistant.safety.classifier import CRISIS_LABELS, shipped_model
from assistant.safety.rules import CATEGORIES, match_rules

if TYPE_CHECKING:
    from ingest.embedding import Embedder

__all__ = ["CATEGORIES", "CONTEXT_TURNS", "CrisisAssessment", "detect_crisis", "sentence_model", "warm"]

CONTEXT_TURNS = 3  # the current message and the two student turns before it
CONTEXT_GATE = 0.2
LEVELS = ("crisis", "concern", "none")


@dataclass(frozen=True)
class CrisisAssessment:
    crisis: bool
    category: str | None  # set when crisis
    score: float  # the strongest of the rule score and the classifier's crisis probability, 0..1
    matched: tuple[str, ...]  # what the rules matched, as typed
    level: str = "none"  # crisis | concern | none
    source: str | None = None  # what decided a crisis: rules | model | context
    model: float = 0.0  # the classifier's P(crisis) for the message alone
    watch: bool = False  # not a crisis, but P(crisis) in the watch band: concern level and careful mode


def _crisis_p(probs: dict[str, float]) -> float:
    return sum(probs[c] for c in CRISIS_LABELS)


def _top_category(probs: dict[str, float]) -> str:
    return max(CRISIS_LABELS, key=lambda c: probs[c])


def sentence_model() -> str | None:
    """The embedder the shipped classifier's sentence head reads (None: it has none)."""
    head = shipped_model().sentence
    return head.model_id if head is not None else None


def _embed(embedder: Embedder | None) -> Callable[[str], np.ndarray] | None:
    """The sentence head's embedder as a function of text, or None (no embedder, or a model without the head)."""
    if embedder is None or shipped_model().sentence is None:
        return None
    if embedder.model_id != sentence_model():
        raise SafetyModelError(f"the crisis classifier reads {sentence_model()} vectors, but the screen was given "
                               f"{embedder.model_id} — pass an {sentence_model()} embedder, or none for the n-grams alone")
    return lambda text: embedder.embed_query([text])[0]


def detect_crisis(text: str, *, careful: bool = False, context: Sequence[str] = (),
                  embedder: Embedder | None = None) -> CrisisAssessment:
    """Screen one student message (`careful`: an earlier crisis in the session; `context`: earlier student turns;
    `embedder`: the sentence head's embedder, e5-small — without it the n-gram head decides alone)."""
    if not isinstance(text, str):
        raise TypeError(f"detect_crisis expects str, got {type(text).__name__}")
    model = shipped_model()
    embed = _embed(embedder)
    th = model.thresholds_for(embed is not None)
    rules = match_rules(text, careful=careful)
    probs = model.probabilities(text, rules.signals, embed)  # the rules' signals are model features: computed once
    p_crisis = _crisis_p(probs)
    p_alarm = p_crisis + probs["concern"]
    source, category, score = None, None, max(rules.score, p_crisis)
    if rules.crisis:
        source, category = "rules", rules.category
    elif (p_alarm if careful else p_crisis) >= (th.careful if careful else th.crisis):
        source, category = "model", _top_category(probs)
    else:
        earlier = [t for t in context if isinstance(t, str) and t.strip()][-(CONTEXT_TURNS - 1):]
        if earlier and p_alarm >= CONTEXT_GATE:
            window = model.probabilities(" ".join([*earlier, text]), embed=embed)
            if _crisis_p(window) >= th.context:
                source, category, score = "context", _top_category(window), max(score, _crisis_p(window))
    watch = source is None and p_crisis >= th.watch
    if source is not None:
        level = "crisis"
    elif watch or p_alarm >= th.concern or (rules.distress and p_alarm >= th.concern / 2):
        level = "concern"
    else:
        level = "none"
    return CrisisAssessment(crisis=source is not None, category=category, score=round(score, 4),
                            matched=rules.matched, level=level, source=source, model=round(p_crisis, 4), watch=watch)


def warm(embedder: Embedder | None = None) -> None:
    """Load the classifier, the rules' morphological analyser (and the embedder) now rather than on the first turn."""
    detect_crisis("배고파 죽겠다", embedder=embedder)
