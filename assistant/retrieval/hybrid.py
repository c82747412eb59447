"""Hybrid Korean retrieval: dense (FAISS) + BM25 over Kiwi morphemes + BM25 over character bigrams, fused by
weighted reciprocal rank fusion at document level, with occupations named in the query (SQL facts) first.

Modes: `dense`, `bm25`, `bigram`, `hybrid` (fusion of the three), `hybrid+facts` (the default: documents of
occupations named in the query or the conversation context lead, then the fused list).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from assistant.retrieval.corpus import Corpus, Snapshot
from assistant.errors import RetrievalError
from assistant.retrieval.facts import FactLookup, OccupationFacts
from assistant.retrieval.query import ExpandedQuery, Lexicon, compose, expand, load_lexicon
from assistant.retrieval.rerank import Candidates, Prior, Reranker, document_priors
from db.vectorstore import FaissStore
from ingest.embedding import CachedEmbedder, Embedder
from ingest.lexical import char_bigrams, morphemes

MODES = ("dense", "bm25", "bigram", "hybrid", "hybrid+facts")
MAX_QUERY_CHARS = 2000  # a longer query is cut to its first 2,000 characters
CANDIDATES = 20  # fused candidates a re-ranker is trained on (it re-ranks its own `depth` of them)


@dataclass(frozen=True)
class FusionWeights:
    """Weighted RRF: score(doc) = sum over lists of weight / (k + rank). Tuned for e5-small on
    data/eval/retrieval_dev.jsonl only (`python -m bench.embedder_bench --tune`: highest Recall@1 + Recall@5)."""

    dense: float = 2.0
    bm25: float = 1.0
    bigram: float = 1.0
    k: float = 10.0
    depth: int = 100  # candidates taken from each list


@dataclass(frozen=True)
class Hit:
    """One passage: the best chunk of a document for this query."""

    chunk_id: int
    document_id: int
    external_id: str
    title: str
    as_of: str | None
    text: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # 1-based rank in each list that found it
    from_facts: bool = False


@dataclass(frozen=True)
class RetrievalResult:
    query: str
    mode: str
    hits: list[Hit]
    facts: list[OccupationFacts]
    confidence: float  # best dense cosine among the hits (0 when none): low means the DB may not cover it
    timings_ms: dict[str, float]
    note: str | None = None
    expansion: tuple[str, ...] = ()  # lexicon targets added to the lexical queries (assistant/retrieval/query.py)


def _has_words(text: str) -> bool:
    """Hangul syllables, Latin letters or digits; lone jamo (ㅋㅋ, ㅠㅠ), punctuation and emoji are not words."""
    return any(("가" <= ch <= "힣") or (ch.isalnum() and not ("ㄱ" <= ch <= "ㆎ")) for ch in text)


def _doc_ranking(snap: Snapshot, rows: np.ndarray) -> list[int]:
    """Chunk rows in rank order -> the first (best) row of each document, in order."""
    seen: set[int] = set()
    out = []
    for r in rows:
        d = int(snap.doc_ids[r])
        if d not in seen:
            seen.add(d)
            out.append(int(r))
    return out


def _with_views(snap: Snapshot, ranking: list[int], cos: dict[int, float], view_scores: np.ndarray,
                depth: int) -> tuple[list[int], dict[int, float]]:
    """The dense document ranking with document views: a document scores its best chunk's cosine plus its view's
    (one without a view counts its best chunk twice); a document that only its view brings among the best counts
    the weakest candidate chunk's cosine. On dev (e5-small) this lifted dense R@5 0.723 -> 0.779 and hybrid R@5
    0.897 -> 0.933 (docs/retrieval.md). Returns each document's chunk row (its best candidate, else its first)
    and the document scores."""
    floor = min(cos.values()) if cos else 0.0
    score: dict[int, float] = {}
    row_of_doc: dict[int, int] = {}
    for r in ranking:
        d = int(snap.doc_ids[r])
        row_of_doc[d] = r
        score[d] = 2 * cos[r]
    with_view = np.searchsorted(snap.view_doc_ids, np.fromiter(score, dtype=np.int64, count=len(score)))
    for d, i in zip(list(score), with_view):
        if i < len(snap.view_doc_ids) and snap.view_doc_ids[i] == d:
            score[d] = cos[row_of_doc[d]] + float(view_scores[i])
    for i in np.argsort(-view_scores)[: depth * 2]:
        d = int(snap.view_doc_ids[i])
        if d not in score and d in snap.doc_first_row:
            score[d] = floor + float(view_scores[i])
            row_of_doc[d] = snap.doc_first_row[d]
    best = sorted(score, key=score.__getitem__, reverse=True)[:depth]
    return [row_of_doc[d] for d in best], {d: score[d] for d in best}


@dataclass
class _Lists:
    """What the single lists found for one query: rows in rank order, document scores, dense cosines."""

    rows: dict[str, list[int]] = field(default_factory=dict)
    doc_scores: dict[str, dict[int, float]] = field(default_factory=dict)
    cos: dict[int, float] = field(default_factory=dict)  # chunk row -> cosine
    view_scores: np.ndarray | None = None  # aligned with Snapshot.view_doc_ids


@dataclass(frozen=True)
class _Prepared:
    """Built with each snapshot: the occupation-name index and the documents' priors for the re-ranker."""

    names: object
    priors: dict[int, Prior]


class HybridRetriever:
    """`reranker`: the learned re-ranker of the fused candidates (`assistant/retrieval/rerank.py`); by default the
    one shipped for the embedder's model, if any. `rerank=False` keeps the fused order (the peer in benchmarks)."""

    def __init__(self, factory: sessionmaker[Session], embedder: Embedder, store: FaissStore, *,
                 weights: FusionWeights | None = None, check_every: float = 2.0, lexicon: Lexicon | None = None,
                 expansion: bool = True, background: bool = False, rerank: bool = True,
                 reranker: Reranker | None = None) -> None:
        if embedder.model_id != store.model_id:
            raise RetrievalError(
                f"the embedder is {embedder.model_id} but the index holds {store.model_id} vectors — "
                "run `ingest reindex` or set JINRO_EMBEDDER to the index's model"
            )
        if reranker is not None and reranker.model_id != embedder.model_id:
            raise RetrievalError(f"the re-ranker was trained for {reranker.model_id}, the embedder is "
                                 f"{embedder.model_id} — retrain it with `python -m assistant.retrieval.train_reranker`")
        self.factory = factory
        self.embedder = CachedEmbedder(embedder)
        self.facts = FactLookup(factory)
        # background: new snapshots are built on their own thread while queries use the old one (the API)
        self.corpus = Corpus(factory, store, check_every=check_every, background=background, prepare=self._prepare)
        self.weights = weights or FusionWeights()
        self.reranker = (reranker or Reranker.for_model(embedder.model_id)) if rerank else None
        self._priors: dict[int, Prior] = {}
        # student vocabulary -> dictionary terms, added to these lists' queries (see docs/retrieval.md)
        self.lexicon = (lexicon if lexicon is not None else load_lexicon()) if expansion else None
        self.expand_lists: tuple[str, ...] = ("dense", "bm25", "bigram")  # the lists whose query is expanded

    def warm(self) -> None:
        """Load everything now instead of on the first query."""
        self._snapshot()
        morphemes("준비")
        self.embedder.embed_query(["준비"])
        self.facts.mentions("간호사")

    def lookup_facts(self, text: str) -> list[OccupationFacts]:
        """Occupations named in `text`, with their facts (the name index is refreshed like the rest)."""
        self._snapshot()
        return self.facts.lookup(text)

    def _prepare(self) -> _Prepared:
        return _Prepared(self.facts.build(), document_priors(self.factory))

    def _snapshot(self) -> Snapshot:
        snap = self.corpus.current()
        if self.facts.version != snap.version:  # the name index built with the snapshot
            self.facts.use(snap.prepared.names, snap.version)
            self._priors = snap.prepared.priors
        return snap

    # -- the single lists -------------------------------------------------------------------------------
    def _query_vector(self, query: str, terms: Sequence[str]) -> np.ndarray:
        """The dense query: the query's vector composed with each added term's (`query.compose`). A turn's message
        is embedded once (the crisis screen's vector, from the cache); the terms, a small recurring vocabulary, are
        embedded once each."""
        terms = [t for t in dict.fromkeys(terms) if t.strip() and t != query]
        return compose([query, *terms], self.embedder.embed_query([query, *terms]))

    def _dense(self, snap: Snapshot, query: str, terms: Sequence[str], depth: int, found: _Lists) -> None:
        vec = self._query_vector(query, terms)
        scores, ids = snap.store.search(vec, depth * 2)
        rows = []
        for s, cid in zip(scores[0], ids[0]):
            r = snap.row_of.get(int(cid))
            if r is not None:
                rows.append(r)
                found.cos[r] = float(s)
        ranking = _doc_ranking(snap, np.asarray(rows, dtype=np.int64))
        if not len(snap.views) or snap.views.shape[1] != vec.shape[1]:
            found.rows["dense"] = ranking[:depth]
            found.doc_scores["dense"] = {int(snap.doc_ids[r]): 2 * found.cos[r] for r in ranking[:depth]}
            return
        found.view_scores = snap.views @ vec[0]
        found.rows["dense"], found.doc_scores["dense"] = _with_views(snap, ranking, found.cos, found.view_scores, depth)

    def _lexical(self, snap: Snapshot, query: str, depth: int, kind: str, found: _Lists) -> None:
        """BM25 list of documents, each as its best chunk row. `bm25` ranks whole documents (all chunk terms as
        one text, so terms spread over several chunks add up) and takes the passage from the chunk-level index;
        `bigram` ranks chunks and keeps each document's best chunk."""
        if kind == "bm25" and snap.doc_morph is not None and snap.doc_morph.size:
            tokens = morphemes(query)
            docs, doc_scores = snap.doc_morph.top(tokens, depth)
            chunk_rows, _ = snap.morph.top(tokens, depth * 2)
            best = {int(snap.doc_ids[r]): int(r) for r in _doc_ranking(snap, chunk_rows)}
            firsts = snap.doc_rows[docs]
            found.rows[kind] = [best.get(int(snap.doc_ids[f]), int(f)) for f in firsts]
            found.doc_scores[kind] = {int(snap.doc_ids[f]): float(v) for f, v in zip(firsts, doc_scores)}
            return
        index = snap.morph if kind == "bm25" else snap.bigram
        if index is None:
            found.rows[kind] = []
            return
        tokens = morphemes(query) if kind == "bm25" else char_bigrams(query)
        rows, scores = index.top(tokens, depth * 2)
        ranking = _doc_ranking(snap, rows)[:depth]
        score_of = dict(zip(rows.tolist(), scores.tolist()))
        found.rows[kind] = ranking
        found.doc_scores[kind] = {int(snap.doc_ids[r]): score_of[r] for r in ranking}

    # -- the public call ----------------------------------------------------------------------------------
    def search(self, query: str, *, k: int = 10, mode: str = "hybrid+facts", context: str = "",
               terms: Sequence[str] = ()) -> RetrievalResult:
        """Top `k` passages (one per document) for `query`; `context` (recent turns, occupations in play)
        is used to recognise occupations for the facts lookup; `terms` (the occupation in play, interests) are
        added to the query: as words in the lexical lists, composed with its vector in the dense one."""
        if mode not in MODES:
            raise RetrievalError(f"unknown retrieval mode {mode!r}: use one of {', '.join(MODES)}")
        if not isinstance(query, str) or not query.strip():
            raise RetrievalError("the query is empty — ask a question in words")
        if k < 1:
            raise RetrievalError("k must be at least 1")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        query = query[:MAX_QUERY_CHARS]
        snap = self._snapshot()
        timings["refresh"] = (time.perf_counter() - t0) * 1000
        if snap.empty:
            return RetrievalResult(query, mode, [], [], 0.0, timings, note="the knowledge DB is empty")
        if not _has_words(query):
            return RetrievalResult(query, mode, [], [], 0.0, timings, note="the query has no words")
        terms = [t[:MAX_QUERY_CHARS] for t in terms if isinstance(t, str) and t.strip()]
        expanded, found = self._lists(snap, query, mode, timings, terms)
        t = time.perf_counter()
        lists = found.rows
        facts: list[OccupationFacts] = []
        named: list[OccupationFacts] = []  # occupations the query itself names
        if mode == "hybrid+facts":
            t_facts = time.perf_counter()
            named = self.facts.lookup(query)
            facts = named or (self.facts.lookup(context) if context else [])
            timings["facts"] = (time.perf_counter() - t_facts) * 1000
        if mode.startswith("hybrid"):
            ranked = self._fuse(snap, lists)
            if self.reranker is not None:
                t_rerank = time.perf_counter()
                ranked = self._rerank(snap, query, ranked, found, named)
                timings["rerank"] = (time.perf_counter() - t_rerank) * 1000
        else:
            ranked = [(r, 1.0 / (1 + i)) for i, r in enumerate(lists[mode])]
        ranks = {name: {r: i + 1 for i, r in enumerate(rows)} for name, rows in lists.items()}
        named_ids = {f.external_id for f in named} if self.reranker is not None else set()
        entries = [(r, v, snap.external_ids[r] in named_ids) for r, v in ranked[:k]]
        if facts and not named_ids:
            # without a re-ranker, or for occupations named earlier in the conversation: their documents lead
            entries = self._facts_first(snap, facts, ranked)
        hits = [self._hit(snap, r, v, {n: rk[r] for n, rk in ranks.items() if r in rk}, lead)
                for r, v, lead in entries[:k]]  # only the k shown are built
        timings["fusion"] = (time.perf_counter() - t) * 1000
        cos = found.cos
        if not cos and mode != "dense" and hits:  # confidence always comes from the dense scores
            cos = self._cosines(snap, query, [snap.row_of[h.chunk_id] for h in hits])
        confidence = max((cos.get(snap.row_of[h.chunk_id], 0.0) for h in hits), default=0.0)
        timings["total"] = (time.perf_counter() - t0) * 1000
        return RetrievalResult(query, mode, hits, facts, confidence, timings, expansion=expanded.added_terms)

    def _lists(self, snap: Snapshot, query: str, mode: str, timings: dict[str, float],
               terms: Sequence[str] = ()) -> tuple[ExpandedQuery, _Lists]:
        """Run the single lists `mode` needs, their queries expanded with the lexicon (and `terms`)."""
        w = self.weights
        t = time.perf_counter()
        full = " ".join([query, *terms])
        expanded = expand(full, self.lexicon) if self.lexicon is not None else ExpandedQuery(full)
        timings["expand"] = (time.perf_counter() - t) * 1000
        # with e5-small the expanded dense query helps in the fused modes too (dev R@1 0.585 -> 0.626 at the same
        # R@5, docs/retrieval.md); with USE it only helped in `dense` mode, which therefore always expands
        expand_in = self.expand_lists + (("dense",) if mode == "dense" else ())
        text_for = {name: expanded.text if name in expand_in else full for name in ("bm25", "bigram")}
        found = _Lists()
        if mode in ("dense", "hybrid", "hybrid+facts"):
            t = time.perf_counter()
            added = expanded.added_terms if "dense" in expand_in else ()
            self._dense(snap, query, [*terms, *added], w.depth, found)
            timings["dense"] = (time.perf_counter() - t) * 1000
        for kind in ("bm25", "bigram"):
            if mode == kind or (mode.startswith("hybrid") and getattr(w, kind) > 0):
                t = time.perf_counter()
                self._lexical(snap, text_for[kind], w.depth, kind, found)
                timings[kind] = (time.perf_counter() - t) * 1000
        return expanded, found

    def fused_candidates(self, query: str) -> Candidates:
        """The fused top candidates of `query` before re-ranking (what `python -m
        assistant.retrieval.train_reranker` learns from), with their features' inputs."""
        snap = self._snapshot()
        if snap.empty or not _has_words(query):
            return Candidates(query, [], [], [], [])
        _, found = self._lists(snap, query[:MAX_QUERY_CHARS], "hybrid", {})
        return self.candidates(snap, query, self._fuse(snap, found.rows)[:CANDIDATES], found)

    @property
    def priors(self) -> dict[int, Prior]:
        self._snapshot()
        return self._priors

    @staticmethod
    def candidates(snap: Snapshot, query: str, top: list[tuple[int, float]], found: _Lists) -> Candidates:
        """The (row, fused score) pairs `top` as the re-ranker sees them."""
        docs = [int(snap.doc_ids[r]) for r, _ in top]
        view: dict[int, float] = {}
        if found.view_scores is not None and len(snap.view_doc_ids):
            at = np.searchsorted(snap.view_doc_ids, np.asarray(docs, dtype=np.int64))
            view = {d: float(found.view_scores[i]) for d, i in zip(docs, at)
                    if i < len(snap.view_doc_ids) and snap.view_doc_ids[i] == d}
        doc_ranks = {name: {int(snap.doc_ids[r]): i + 1 for i, r in enumerate(rows)} for name, rows in found.rows.items()}
        return Candidates(query, docs, [s for _, s in top], [snap.titles[r] for r, _ in top],
                          [int(snap.doc_chunks.get(d, 1)) for d in docs], doc_ranks, found.doc_scores, view)

    def _rerank(self, snap: Snapshot, query: str, ranked: list[tuple[int, float]], found: _Lists,
                named: Sequence[OccupationFacts] = ()) -> list[tuple[int, float]]:
        """The re-ranker's order of the fused top `depth`. Occupations the query names join the candidates (a name
        said in passing, "의사 선생님 도와서 …", must not lead a description of another occupation): the
        re-ranker's first, then the named ones, then the rest in order."""
        assert self.reranker is not None
        depth = self.reranker.depth
        named_rows = [snap.first_row[f.external_id] for f in named if f.external_id in snap.first_row]
        named_docs = {int(snap.doc_ids[r]) for r in named_rows}
        top = ranked[:depth]
        in_top = {int(snap.doc_ids[r]) for r, _ in top}
        extra = [(r, 0.0) for r in dict.fromkeys(named_rows) if int(snap.doc_ids[r]) not in in_top]
        pool = top + extra
        rest = [(r, v) for r, v in ranked[depth:] if int(snap.doc_ids[r]) not in named_docs]
        c = self.candidates(snap, query, pool, found)
        order = [pool[i] for i in self.reranker.order(c, self._priors)]
        if named_docs:
            lead = order[:1]
            order = lead + [x for x in order[1:] if int(snap.doc_ids[x[0]]) in named_docs] + \
                [x for x in order[1:] if int(snap.doc_ids[x[0]]) not in named_docs]
        return order + rest

    def _cosines(self, snap: Snapshot, query: str, rows: Sequence[int]) -> dict[int, float]:
        vec = self.embedder.embed_query([query])[0]
        ids = snap.chunk_ids[list(rows)]
        return {r: float(v @ vec) for r, v in zip(rows, snap.store.vectors(ids))}

    def _fuse(self, snap: Snapshot, lists: dict[str, list[int]]) -> list[tuple[int, float]]:
        w = self.weights
        scores: dict[int, float] = {}
        first_row: dict[int, int] = {}  # doc -> its best chunk row (the first list that ranked it highest)
        best_rank: dict[int, int] = {}
        for name, rows in lists.items():
            weight = getattr(w, name)
            for rank, r in enumerate(rows, 1):
                d = int(snap.doc_ids[r])
                scores[d] = scores.get(d, 0.0) + weight / (w.k + rank)
                if rank < best_rank.get(d, 1 << 30):
                    best_rank[d], first_row[d] = rank, r
        order = sorted(scores, key=lambda d: (-scores[d], best_rank[d]))
        return [(first_row[d], scores[d]) for d in order]

    @staticmethod
    def _hit(snap: Snapshot, row: int, score: float, ranks: dict[str, int], from_facts: bool = False) -> Hit:
        return Hit(int(snap.chunk_ids[row]), int(snap.doc_ids[row]), snap.external_ids[row], snap.titles[row],
                   snap.as_ofs[row], snap.texts[row], float(score), ranks, from_facts)

    @staticmethod
    def _facts_first(snap: Snapshot, facts: list[OccupationFacts],
                     ranked: list[tuple[int, float]]) -> list[tuple[int, float, bool]]:
        """(row, score, from facts): the documents of `facts` first (with their ranked passage, else their first
        chunk), then the rest in order."""
        wanted = list(dict.fromkeys(f.external_id for f in facts if f.external_id))
        found: dict[str, tuple[int, float]] = {}
        for r, v in ranked:
            found.setdefault(snap.external_ids[r], (r, v))
        lead = [(*found[ext], True) if ext in found else (snap.first_row[ext], 0.0, True)  # else its first chunk
                for ext in wanted if ext in found or ext in snap.first_row]
        lead_ids = {snap.external_ids[r] for r, _, _ in lead}
        return lead + [(r, v, False) for r, v in ranked if snap.external_ids[r] not in lead_ids]
