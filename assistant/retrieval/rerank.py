"""Learned re-ranking of the fused candidates: a linear listwise model over the top `depth` documents.

The fused list (weighted RRF of dense, BM25 and bigram lists, `assistant/retrieval/hybrid.py`) usually has the
occupation meant in its top five but not always first: an obscure neighbour with a closer wording wins (issue 14's
fourth failure class). The re-ranker scores each candidate from what the lists saw (ranks and scores relative to
the best), how much of the candidate's name the question holds, and how general the occupation is (how many chunks,
similar names and occupations pointing to it; whether its name carries a qualifier such as "(일반)"), and sorts the
candidates by that score (policy `order`), or only moves its best candidate to the front and keeps the fused order
below it (policy `promote`); the training picks the policy and the depth on dev.

It is a conditional logit (softmax over one query's candidates, L2-penalised), trained by
`python -m assistant.retrieval.train_reranker` on pseudo-queries written by procedure from the dictionary (occupations
that no evaluation set names) and on the dev halves' questions, never a blind or test one. The weights
ship as JSON (`data/retrieval/reranker-<model>.json`, with the training figures); scoring is a dot product in numpy.
A re-ranker belongs to one embedding model (the dense features are its cosines): the retriever uses it only with
that model.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from assistant.errors import RetrievalError
from db.models import Occupation, OccupationAlias, OccupationRelation

RERANKER_DIR = Path(__file__).resolve().parents[2] / "data" / "retrieval"
LISTS = ("dense", "bm25", "bigram")
FEATURES = (
    "fused_rel", "fused_rank", "dense_rel", "view_rel", "dense_rank", "bm25_rel", "bm25_rank", "bigram_rel",
    "bigram_rank", "name_share", "name_in_query", "similar_in_query", "group_share", "log_chunks", "name_len",
    "qualified", "log_similar", "log_indegree",
)
POLICIES = ("promote", "order")
_QUALIFIER = re.compile(r"\([^)]*\)")


def default_path(model_id: str) -> Path:
    return RERANKER_DIR / f"reranker-{model_id}.json"


@dataclass(frozen=True)
class Prior:
    """How general a document's occupation is (uploaded documents have no occupation: the training means)."""

    similar: int = 0  # the dictionary's similar names for it
    indegree: int = 0  # occupations that list it as related
    similar_names: tuple[str, ...] = ()  # those names without spaces
    group: str = ""  # its classification group's name (KECO), without spaces


def document_priors(factory: sessionmaker[Session]) -> dict[int, Prior]:
    """document id -> Prior, for every document of an occupation (built with each retrieval snapshot)."""
    names: dict[int, list[str]] = {}
    with factory() as s:
        for doc, compact in s.execute(
                select(Occupation.document_id, OccupationAlias.compact).join(OccupationAlias)
                .where(OccupationAlias.kind == "similar", Occupation.document_id.is_not(None))):
            names.setdefault(doc, []).append(compact)
        indegree = dict(s.execute(
            select(Occupation.document_id, func.count(OccupationRelation.id))
            .join(OccupationRelation, OccupationRelation.related_id == Occupation.id)
            .where(Occupation.document_id.is_not(None)).group_by(Occupation.document_id)).all())
        groups = s.execute(select(Occupation.document_id, Occupation.keco_name)
                           .where(Occupation.document_id.is_not(None))).all()
    return {d: Prior(len(names.get(d, ())), indegree.get(d, 0), tuple(n for n in names.get(d, ()) if len(n) >= 2),
                     _compact(group or "")) for d, group in groups}


@dataclass
class Candidates:
    """One query's fused candidates and what each list said of them (document ids throughout)."""

    query: str
    docs: list[int]  # in fused order
    fused: list[float]
    titles: list[str]
    chunks: list[int]  # chunks per document
    ranks: dict[str, dict[int, int]] = field(default_factory=dict)  # list -> doc -> 1-based rank
    scores: dict[str, dict[int, float]] = field(default_factory=dict)  # list -> doc -> raw score
    view: dict[int, float] = field(default_factory=dict)  # doc -> its view's cosine with the query


def _compact(text: str) -> str:
    return "".join(text.split())


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)} or ({text} if text else set())


def features(c: Candidates, priors: Mapping[int, Prior], fallback: Sequence[float]) -> np.ndarray:
    """[len(c.docs), len(FEATURES)]; `fallback`: log_similar and log_indegree for documents without a prior."""
    q = _compact(c.query)
    q_bigrams = _bigrams(q)
    top_fused = c.fused[0] if c.fused and c.fused[0] > 0 else 1.0
    best = {name: max(c.scores.get(name, {}).values(), default=0.0) for name in LISTS}
    floor_dense = min(c.scores.get("dense", {}).values(), default=0.0)
    best_view = max(c.view.values(), default=0.0)
    floor_view = min(c.view.values(), default=0.0)
    out = np.zeros((len(c.docs), len(FEATURES)), np.float64)
    for i, d in enumerate(c.docs):
        name = _compact(_QUALIFIER.sub("", c.titles[i]))
        prior = priors.get(d)
        row = {
            "fused_rel": c.fused[i] / top_fused,
            "fused_rank": 1.0 / (i + 1),
            "dense_rel": c.scores.get("dense", {}).get(d, floor_dense) - best["dense"],
            "view_rel": c.view.get(d, floor_view) - best_view,
            "bm25_rel": c.scores.get("bm25", {}).get(d, 0.0) / best["bm25"] if best["bm25"] > 0 else 0.0,
            "bigram_rel": c.scores.get("bigram", {}).get(d, 0.0) / best["bigram"] if best["bigram"] > 0 else 0.0,
            "name_share": len(_bigrams(name) & q_bigrams) / len(_bigrams(name)) if name else 0.0,
            "name_in_query": float(len(name) >= 2 and name in q),
            "similar_in_query": float(bool(prior) and any(n in q for n in prior.similar_names)),
            "group_share": len(_bigrams(prior.group) & q_bigrams) / len(_bigrams(prior.group)) if prior and prior.group else 0.0,
            "log_chunks": math.log1p(c.chunks[i]),
            "name_len": min(len(name), 20) / 10.0,
            "qualified": float("(" in c.titles[i]),
            "log_similar": math.log1p(prior.similar) if prior else fallback[0],
            "log_indegree": math.log1p(prior.indegree) if prior else fallback[1],
        }
        for name_ in LISTS:
            rank = c.ranks.get(name_, {}).get(d)
            row[f"{name_}_rank"] = 1.0 / rank if rank else 0.0
        out[i] = [row[f] for f in FEATURES]
    return out


@dataclass(frozen=True)
class Reranker:
    """Linear scores over standardised features; `order` sorts one query's candidates."""

    model_id: str
    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    depth: int = 20
    policy: str = "promote"  # "promote": its best candidate goes first, the rest keep the fused order; "order": sort all
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback(self) -> tuple[float, float]:
        i, j = FEATURES.index("log_similar"), FEATURES.index("log_indegree")
        return float(self.mean[i]), float(self.mean[j])

    def scores(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights

    def order(self, c: Candidates, priors: Mapping[int, Prior]) -> list[int]:
        """Positions into `c.docs`, best first."""
        if len(c.docs) < 2:
            return list(range(len(c.docs)))
        s = self.scores(features(c, priors, self.fallback))
        if self.policy == "promote":
            best = int(np.argmax(s))
            return [best] + [i for i in range(len(c.docs)) if i != best]
        return sorted(range(len(c.docs)), key=lambda i: (-s[i], i))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"model_id": self.model_id, "depth": self.depth, "policy": self.policy, "features": list(FEATURES),
                "weights": [round(float(w), 6) for w in self.weights], "mean": [round(float(m), 6) for m in self.mean],
                "scale": [round(float(s), 6) for s in self.scale], "meta": self.meta}
        path.write_text(json.dumps(body, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Reranker:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            if tuple(body["features"]) != FEATURES:
                raise RetrievalError(f"the re-ranker {path} was trained on other features — retrain it with "
                                     "`python -m assistant.retrieval.train_reranker`")
            arrays = [np.asarray(body[k], np.float64) for k in ("weights", "mean", "scale")]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RetrievalError(f"cannot read the re-ranker {path} ({exc}) — restore it from git or retrain it with "
                                 "`python -m assistant.retrieval.train_reranker`") from exc
        if any(a.shape != (len(FEATURES),) for a in arrays) or np.any(arrays[2] <= 0):
            raise RetrievalError(f"the re-ranker {path} is malformed — retrain it with "
                                 "`python -m assistant.retrieval.train_reranker`")
        policy = body.get("policy", "promote")
        if policy not in POLICIES:
            raise RetrievalError(f"the re-ranker {path} has an unknown policy {policy!r} (one of {', '.join(POLICIES)})")
        return cls(body["model_id"], *arrays, depth=int(body.get("depth", 20)), policy=policy, meta=body.get("meta", {}))

    @classmethod
    def for_model(cls, model_id: str) -> Reranker | None:
        """The shipped re-ranker of this embedding model, or None when it has none."""
        path = default_path(model_id)
        return cls.load(path) if path.exists() else None
