"""The learned layer of crisis screening: a linear model over hashed character, jamo and word n-grams.

Features (`features`): the message is NFKC-normalised, lower-cased, stripped of invisible characters and of runs
longer than two of one character (ㅠㅠㅠㅠ → ㅠㅠ); a *compact* copy keeps only letters and digits, so spacing tricks
("주 거 버 리 고 싶 다") read like the plain text.  From it come
    c  character 1-3-grams of the compact text (with ^ and $ at its ends),
    j  3-5-grams of its jamo (NFD), so a typo that changes one jamo (죽고십다, 주거버리고) keeps most features,
    w  the words as typed (split on anything not a letter or digit),
    r  the rule layer's signals (assistant.safety.rules: per-category cue strength, distress, career / game / home
       talk, idioms and masked phrases), valued RULE_WEIGHT: the rules are features the model weighs, not only a floor.
Each is hashed (crc32) into `N_FEATURES` buckets; a message is the vector of its buckets, L2-normalised.

Model (`CrisisModel`): multinomial logistic regression over `LABELS` — none, concern and the five crisis categories —
trained by `python -m assistant.safety.train` on the dev half of the bank (data/safety/bank/, see its README) plus
the non-crisis sources listed there, and shipped as data/safety/crisis_model.npz (only the buckets training saw).
A long message is scored in overlapping windows of `WINDOW` compact characters and the most alarming window counts,
so a crisis at the end of a 2,000-character rant is not diluted.  Scoring a chat-sized message takes well under a
millisecond.

The sentence head (`SentenceHead`): a small network (one hidden layer) over the message's multilingual-e5-small
query vector (centred on the training mean), which reads meaning where the n-grams read words ("다들 나 없으면 편할
거야" without a cue word).  With a vector, the model's probabilities are `mix` × the n-gram head's (its most alarming
window) + (1 − mix) × the sentence head's (the whole message), and the `sentence` thresholds apply; without one (no
e5-small engine on this platform: the runtime says so in /readyz) the n-gram head alone decides with its own
thresholds.  The sentence head may also hold the training messages' vectors (`Neighbours`): its probabilities are
then partly the vote of the message's nearest training messages.  Both sets of thresholds are chosen on dev folds by the same rule (`assistant.safety.train`).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from assistant.errors import SafetyModelError
from assistant.safety.rules import match_rules
from assistant.text_features import N_FEATURES, compact, ngram_features, normalise

LABELS = ("none", "concern", "suicide", "self_harm", "abuse", "violence", "runaway")
CRISIS_LABELS = LABELS[2:]
RULE_WEIGHT = 4.0  # a rule signal's value beside the n-grams' 1.0
WINDOW, STRIDE = 160, 80  # compact characters per scored window of a long message, and the step between windows
MODEL_PATH = Path(__file__).resolve().parents[2] / "data" / "safety" / "crisis_model.npz"


def features(text: str, signals: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct buckets of one message and their values, L2-normalised (`assistant.text_features`, with the
    n-grams of the message as pronounced, so 주거버리고 reads like 죽어버리고), with the rule layer's signals valued
    RULE_WEIGHT. `signals`: those of this very text when the caller has them already."""
    return ngram_features(text, match_rules(text).signals if signals is None else signals, RULE_WEIGHT, sound=True)


def windows(text: str) -> list[str]:
    """The text itself when short, else overlapping windows of about `WINDOW` compact characters (cut at spaces)."""
    norm = normalise(text)
    if len(compact(norm)) <= WINDOW + STRIDE // 2:
        return [text]
    words, out, start = norm.split(), [], 0
    lengths = [len(compact(w)) for w in words]
    while start < len(words):
        end, size = start, 0
        while end < len(words) and (size + lengths[end] <= WINDOW or end == start):
            size += lengths[end]
            end += 1
        out.append(" ".join(words[start:end]))
        if end >= len(words):
            break
        step, moved = 0, start
        while moved < end - 1 and step < STRIDE:
            step += lengths[moved]
            moved += 1
        start = max(moved, start + 1)
    return out


@dataclass(frozen=True)
class Thresholds:
    crisis: float  # P(any crisis label) for a crisis
    watch: float  # P(any crisis label) from which a message gets the concern check-in and careful mode
    careful: float  # P(concern or crisis) for a crisis after an earlier crisis in the session
    context: float  # P(crisis) of the last few student turns read together
    concern: float  # P(concern or crisis) for a concern


@dataclass(frozen=True)
class SentenceHead:
    """A one-hidden-layer network (ReLU, softmax over `LABELS`) over a sentence embedder's query vector, centred on
    the training mean, re-normalised and multiplied by `scale`: `model_id` names the embedder it was trained on,
    `mix` is the n-gram head's share of the mixed probabilities, `thresholds` apply to the mixture."""

    model_id: str
    mean: np.ndarray  # (dim,)
    scale: float
    hidden_weights: np.ndarray  # (dim, hidden)
    hidden_bias: np.ndarray  # (hidden,)
    weights: np.ndarray  # (hidden, labels)
    bias: np.ndarray  # (labels,)
    mix: float
    thresholds: Thresholds
    neighbours: Neighbours | None = None

    def probabilities(self, vector: np.ndarray) -> np.ndarray:
        if vector.shape != self.mean.shape:
            raise SafetyModelError(f"the crisis model's sentence head reads {self.mean.shape[0]}-d {self.model_id} "
                                   f"vectors, got shape {vector.shape} — pass that embedder's query vector")
        v = vector.astype(np.float32) - self.mean
        v /= max(float(np.linalg.norm(v)), 1e-6)
        z = np.maximum((v * self.scale) @ self.hidden_weights + self.hidden_bias, 0.0) @ self.weights + self.bias
        e = np.exp(z - z.max())
        net = e / e.sum()
        if self.neighbours is None:
            return net
        return (1 - self.neighbours.share) * net + self.neighbours.share * self.neighbours.vote(v)


@dataclass(frozen=True)
class Neighbours:
    """The sentence head's memory: the centred, normalised e5 vectors of the training messages (int8) and their
    labels. A message's vote is its `k` nearest messages' labels, each weighted by exp(`temperature` × cosine);
    `share` of the sentence head's probabilities is this vote, the rest the network's. Nearest neighbours read a
    new wording of a situation the bank holds more closely than the network's smooth boundary (on dev folds crisis
    recall at the false-positive budget rose 0.885 -> 0.92)."""

    vectors: np.ndarray  # (n, dim) float32 (stored as int8 / 127)
    labels: np.ndarray  # (n,) label indices
    k: int
    temperature: float
    share: float

    def vote(self, v: np.ndarray) -> np.ndarray:
        sims = self.vectors @ v
        near = np.argpartition(-sims, self.k)[: self.k]
        w = np.exp(self.temperature * (sims[near] - sims[near].max()))
        out = np.bincount(self.labels[near], weights=w, minlength=len(LABELS))
        return out / out.sum()


class CrisisModel:
    """The shipped classifier: `probabilities(text, embed=…)` over `LABELS`; `thresholds_for(embedded)`."""

    def __init__(self, rows: np.ndarray, weights: np.ndarray, bias: np.ndarray, thresholds: Thresholds,
                 bank_sha256: str = "", sentence: SentenceHead | None = None) -> None:
        if weights.shape != (len(rows), len(LABELS)) or bias.shape != (len(LABELS),):
            raise SafetyModelError(f"crisis model has weights {weights.shape} for {len(rows)} rows and bias "
                                   f"{bias.shape}; expected {len(LABELS)} labels — rebuild it: python -m assistant.safety.train")
        self.dense = np.zeros((N_FEATURES, len(LABELS)), dtype=np.float32)
        self.dense[rows] = weights
        self.bias = bias.astype(np.float32)
        self.thresholds = thresholds  # the n-gram head's alone
        self.bank_sha256 = bank_sha256
        self.sentence = sentence

    def thresholds_for(self, embedded: bool) -> Thresholds:
        """The thresholds for probabilities computed with (`sentence`) or without the sentence head."""
        return self.sentence.thresholds if embedded and self.sentence is not None else self.thresholds

    def _scores(self, text: str, signals: tuple[str, ...] | None = None) -> np.ndarray:
        idx, val = features(text, signals)
        z = val @ self.dense[idx] + self.bias
        e = np.exp(z - z.max())
        return e / e.sum()

    def probabilities(self, text: str, signals: tuple[str, ...] | None = None,
                      embed: Callable[[str], np.ndarray] | None = None) -> dict[str, float]:
        """P(label) for the message; a long message takes its most alarming window. `embed`: the sentence head's
        embedder (text → query vector), given the scored text — the whole of a chat-sized message, the most
        alarming window of a long one (a 2,000-character rant is not embedded whole)."""
        best, best_part = None, text
        parts = windows(text)
        for part in parts:  # the caller's rule signals are for the whole text: they serve only when it is one window
            p = self._scores(part, signals if len(parts) == 1 else None)
            if best is None or p[2:].sum() > best[2:].sum():
                best, best_part = p, part
        if embed is not None and self.sentence is not None:
            best = self.sentence.mix * best + (1 - self.sentence.mix) * self.sentence.probabilities(embed(best_part))
        return {label: float(v) for label, v in zip(LABELS, best)}

    def save(self, path: Path) -> None:
        used = np.flatnonzero(np.abs(self.dense).sum(axis=1) > 0)
        t = self.thresholds
        path.parent.mkdir(parents=True, exist_ok=True)
        head = self.sentence
        extra = {} if head is None else {
            "sentence_model": np.array(head.model_id), "sentence_mean": head.mean.astype(np.float32),
            "sentence_scale": np.array(head.scale), "sentence_hidden_weights": head.hidden_weights.astype(np.float16),
            "sentence_hidden_bias": head.hidden_bias.astype(np.float32),
            "sentence_weights": head.weights.astype(np.float32), "sentence_bias": head.bias.astype(np.float32),
            "sentence_mix": np.array(head.mix), "sentence_thresholds": _as_array(head.thresholds)}
        if head is not None and head.neighbours is not None:
            nb = head.neighbours
            extra.update(neighbour_vectors=np.round(np.clip(nb.vectors, -1, 1) * 127).astype(np.int8),
                         neighbour_labels=nb.labels.astype(np.int8),
                         neighbour_params=np.array([nb.k, nb.temperature, nb.share], dtype=np.float32))
        np.savez_compressed(path, rows=used.astype(np.int32), weights=self.dense[used].astype(np.float16),
                            bias=self.bias, thresholds=_as_array(t), labels=np.array(LABELS),
                            bank_sha256=np.array(self.bank_sha256), **extra)

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> CrisisModel:
        if not path.is_file():
            raise SafetyModelError(f"{path}: crisis model not found — build it: python -m assistant.safety.train")
        try:
            with np.load(path) as z:
                if tuple(z["labels"].tolist()) != LABELS:
                    raise SafetyModelError(f"{path}: labels {z['labels'].tolist()} differ from {LABELS} — rebuild it: "
                                           "python -m assistant.safety.train")
                t = Thresholds(*(float(v) for v in z["thresholds"]))
                head = None
                if "sentence_model" in z.files:
                    nb = None
                    if "neighbour_vectors" in z.files:
                        k, temperature, share = (float(v) for v in z["neighbour_params"])
                        nb = Neighbours(z["neighbour_vectors"].astype(np.float32) / 127, z["neighbour_labels"].astype(np.int64),
                                        int(k), temperature, share)
                    head = SentenceHead(str(z["sentence_model"]), z["sentence_mean"], float(z["sentence_scale"]),
                                        z["sentence_hidden_weights"].astype(np.float32), z["sentence_hidden_bias"],
                                        z["sentence_weights"], z["sentence_bias"], float(z["sentence_mix"]),
                                        Thresholds(*(float(v) for v in z["sentence_thresholds"])), nb)
                return cls(z["rows"], z["weights"].astype(np.float32), z["bias"], t, str(z["bank_sha256"]), head)
        except (OSError, ValueError, KeyError) as exc:
            raise SafetyModelError(f"{path}: unreadable crisis model ({exc}) — rebuild it: "
                                   "python -m assistant.safety.train") from exc


def _as_array(t: Thresholds) -> np.ndarray:
    return np.array([t.crisis, t.watch, t.careful, t.context, t.concern])


_model: CrisisModel | None = None
_model_lock = threading.Lock()


def shipped_model() -> CrisisModel:
    """The shipped model, loaded once per process."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = CrisisModel.load()
    return _model


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
