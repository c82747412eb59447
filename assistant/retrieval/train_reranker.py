"""Train the re-ranker (`assistant/retrieval/rerank.py`) on pseudo-queries written by procedure from the dictionary.

The procedure, fixed and seeded:
1. Occupations: every occupation of the knowledge DB with duties, except those any file in data/eval/ names as gold
   (dev and blind alike: only their gold ids are read), sampled with `--seed`.
2. One pseudo-query per occupation, its family drawn with the seed:
   - `similar` (10%, where it has one): one of its similar names and a name template;
   - `name` (10%): the name without its qualifier, sometimes without spaces, and a template ("… 되려면 뭐 해야 돼?");
   - `keywords` (25%): two or three nouns of one duty sentence and a template ("… 관련 직업 뭐 있어?");
   - `duty` (55%): one duty sentence, the occupation's name removed, cut to its last clause or two, its final verb
     turned into a modifier (선창한다 -> 선창하는), then a student template ("… 직업이 뭐예요?");
   The summaries are not used: the evaluation sets' descriptions are made from them (data/eval/README.md).
3. Student descriptions (data/retrieval/student_descriptions.jsonl, derived): 1,000 occupations that no evaluation
   file names, sampled with seed 16, each described twice in a student's own words by language-model writers
   following the brief of the paraphrase sets (data/retrieval/SOURCE.txt); each counts `described_weight` times a
   pseudo-query. The dev halves' questions (retrieval_dev, the procedural single-turn dev files, paraphrase_dev;
   never a blind or test file) join them, each counting `dev_weight` times a pseudo-query.
4. The fused top 20 of each query (hybrid, no facts, no re-ranking); a query whose occupation is not among them
   teaches nothing and is left out of the fit (the share is reported).
5. A conditional logit over the fused top `depth`, L2-penalised, fitted by L-BFGS. The recipe (depth, penalty,
   dev and description weights, and the policy: sort the candidates, or only promote the best one) is the one with the best dev Recall@1 + Recall@5, averaged over the dev files, out of fold: five
   folds by a hash of the gold occupation, so a dev question is never scored by weights fitted on it. The
   shipped weights are then fitted on everything; the out-of-fold figures are the honest dev figures.

    python -m assistant.retrieval.train_reranker             # on the knowledge DB of JINRO_DATA_DIR; writes
                                                             # data/retrieval/reranker-<model>.json
    python -m assistant.retrieval.train_reranker -n 3000 --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pickle
import random
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.progress import Progress
from scipy.optimize import minimize
from sqlalchemy import select

from assistant.retrieval.hybrid import HybridRetriever
from assistant.retrieval.rerank import FEATURES, POLICIES, Reranker, default_path, features
from db.models import Occupation
from ingest.lexical import kiwi_lock, shared_kiwi

EVAL_DIR = Path(__file__).resolve().parents[2] / "data" / "eval"
DESCRIPTIONS = Path(__file__).resolve().parents[2] / "data" / "retrieval" / "student_descriptions.jsonl"
PENALTIES = (0.1, 1.0, 10.0)
_PARENS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_CUT_AFTER = {"고", "며", "으며", "어", "아", "여", "거나", "고서"}
DUTY_TEMPLATES = ("{d} 직업이 뭐예요?", "{d} 사람을 뭐라고 해?", "{d} 일을 하고 싶어요", "{d} 직업 알려줘",
                  "{d} 일 하려면 무슨 직업을 가져야 돼요?", "{d} 직업 있어?", "{d} 사람 되고 싶은데 그게 뭐야",
                  "혹시 {d} 직업 아세요?")
KEYWORD_TEMPLATES = ("{k} 관련 직업 뭐 있어?", "{k} 쪽 일 하고 싶어요", "{k} 하는 사람 뭐라고 불러요?",
                     "{k} 관련된 일 추천해줘")
NAME_TEMPLATES = ("{n} 되려면 뭐 해야 돼?", "{n}는 무슨 일 해요?", "{n} 어떤 직업이야", "{n} 하고 싶어요")


def evaluation_gold(eval_dir: Path = EVAL_DIR) -> set[str]:
    """Every external id that a file in data/eval/ gives as gold (never trained on)."""
    gold: set[str] = set()
    for path in sorted(eval_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                gold.update(g for g in json.loads(line).get("gold", []) if isinstance(g, str))
    return gold


def _modifier(sentence: str, rng: random.Random) -> str | None:
    """The sentence's last clause or two with the final verb as a modifier (만든다 -> 만드는), or None."""
    kiwi = shared_kiwi()
    with kiwi_lock:
        tokens = kiwi.tokenize(sentence)
        ends = [i for i, t in enumerate(tokens) if t.tag == "EF"]
        if not ends or ends[-1] == 0:
            return None
        tokens = tokens[: ends[-1]]
        cuts = [i + 1 for i, t in enumerate(tokens[:-1]) if t.tag == "EC" and t.form in _CUT_AFTER
                and tokens[i + 1].start > t.start + t.len]
        start = 0
        if cuts:
            start = cuts[-1] if rng.random() < 0.6 or len(cuts) == 1 else cuts[-2]
        text = kiwi.join(list(tokens[start:]) + [("는", "ETM")])
    words = text.split()
    if len(words) < 2:
        return None
    return " ".join(words[-7:])


def _sentences(duties: str, name: str) -> list[str]:
    text = _PARENS.sub("", duties)
    for form in sorted({name, _PARENS.sub("", name)}, key=len, reverse=True):
        if form:
            text = re.sub(re.escape(form) + r"(은|는|이|가|을|를|의)?\s*", "", text)
    return [s.strip() for s in re.split(r"(?<=다)\.\s*", text) if len(s.strip()) >= 8]


def _nouns(sentence: str) -> list[str]:
    kiwi = shared_kiwi()
    with kiwi_lock:
        return [t.form for t in kiwi.tokenize(sentence) if t.tag in ("NNG", "NNP") and len(t.form) >= 2]


def pseudo_query(name: str, duties: str, rng: random.Random, similar: Sequence[str] = ()) -> tuple[str, str] | None:
    """(family, query) for one occupation, or None when its duties give nothing usable."""
    roll = rng.random()
    sentences = _sentences(duties, name)
    if roll < 0.10 and similar:
        return "similar", rng.choice(NAME_TEMPLATES).format(n=rng.choice(list(similar)))
    if roll < 0.20 or not sentences:
        base = _PARENS.sub("", name).strip()
        if rng.random() < 0.3:
            base = base.replace(" ", "")
        return ("name", rng.choice(NAME_TEMPLATES).format(n=base)) if len(base) >= 2 else None
    sentence = rng.choice(sentences)
    if roll < 0.45:
        nouns = list(dict.fromkeys(_nouns(sentence)))
        if len(nouns) < 2:
            return None
        picked = rng.sample(nouns, min(len(nouns), rng.choice((2, 3))))
        return "keywords", rng.choice(KEYWORD_TEMPLATES).format(k=" ".join(picked))
    described = _modifier(sentence, rng)
    return ("duty", rng.choice(DUTY_TEMPLATES).format(d=described)) if described else None


DEV_FILES = ("retrieval_dev.jsonl", "procedural_single_dev.jsonl", "procedural_hard_single_dev.jsonl", "paraphrase_dev.jsonl")
DEV_WEIGHTS = (3.0, 10.0, 30.0, 100.0)  # how much one dev question counts against one pseudo-query
DESCRIBED_WEIGHTS = (0.0, 1.0, 3.0, 10.0)  # how much one student description counts against one pseudo-query
DEPTHS = (10, 20)  # candidates re-ranked (the rest keep the fused order)
FOLDS = 5


def _fold(code: str) -> int:
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) % FOLDS


def _item(retriever: HybridRetriever, query: str, gold_docs: set[int], **extra: object) -> dict:
    c = retriever.fused_candidates(query)
    at = next((i for i, d in enumerate(c.docs) if d in gold_docs), -1)  # -1: not among the candidates
    return {"query": query, "gold": at, "x": features(c, retriever.priors, (0.0, 0.0)), **extra}


def collect_pseudo(retriever: HybridRetriever, n: int, seed: int, progress: Progress) -> tuple[list[dict], dict[str, int]]:
    """The pseudo-queries with their candidates' features; counts of what was made and left out."""
    excluded = evaluation_gold()
    with retriever.factory() as s:
        rows = s.execute(select(Occupation.code, Occupation.name, Occupation.duties, Occupation.document_id)
                         .where(Occupation.document_id.is_not(None)).order_by(Occupation.code)).all()
    pool = [r for r in rows if f"job:{r.code}" not in excluded]
    rng = random.Random(seed)
    sample = rng.sample(pool, min(n, len(pool)))
    counts = {"occupations": len(rows), "excluded_by_eval": len(rows) - len(pool), "sampled": len(sample),
              "no_query": 0, "gold_not_in_top": 0}
    priors = retriever.priors
    out = []
    task = progress.add_task("pseudo-queries", total=len(sample))
    for r in sample:
        progress.advance(task)
        prior = priors.get(r.document_id)
        made = pseudo_query(r.name, r.duties or "", rng, prior.similar_names if prior else ())
        if made is None:
            counts["no_query"] += 1
            continue
        item = _item(retriever, made[1], {r.document_id}, code=r.code, family=made[0], source="pseudo")
        if item["gold"] < 0:
            counts["gold_not_in_top"] += 1
            continue
        out.append(item)
    return out, counts


def collect_file(retriever: HybridRetriever, path: Path, source: str, progress: Progress) -> list[dict]:
    """One file's questions with their candidates' features, each with its fold by gold occupation."""
    snap = retriever.corpus.current()
    doc_of = {snap.external_ids[row]: d for d, row in snap.doc_first_row.items()}
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    task = progress.add_task(path.name, total=len(lines))
    out = []
    for obj in lines:
        progress.advance(task)
        gold = {doc_of[g] for g in obj["gold"] if g in doc_of}
        out.append(_item(retriever, obj["q"], gold, code=sorted(obj["gold"])[0], family=path.name, source=source))
    return out


def collect_dev(retriever: HybridRetriever, progress: Progress, eval_dir: Path = EVAL_DIR) -> list[dict]:
    """The dev halves' questions (never a blind or test file)."""
    return [it for name in DEV_FILES for it in collect_file(retriever, eval_dir / name, "dev", progress)]


def fit(items: Sequence[dict], penalty: float, mean: np.ndarray, scale: np.ndarray,
        weight_of: dict[str, float] | None = None) -> np.ndarray:
    """Weights of the conditional logit: minimise -sum c_q log softmax(X_q w)[gold_q] + penalty |w|^2, where
    c_q is the weight of the query's source (`weight_of`, default 1)."""
    items = [it for it in items if it["gold"] >= 0]
    depth = max(len(it["x"]) for it in items)
    x = np.zeros((len(items), depth, len(FEATURES)))
    mask = np.zeros((len(items), depth), bool)
    for i, it in enumerate(items):
        x[i, : len(it["x"])] = (it["x"] - mean) / scale
        mask[i, : len(it["x"])] = True
    gold = np.array([it["gold"] for it in items])
    c = np.array([(weight_of or {}).get(it["source"], 1.0) for it in items])
    rows = np.arange(len(items))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.where(mask, x @ w, -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        nll = -(c * np.log(p[rows, gold] + 1e-12)).sum()
        grad = np.einsum("q,qd,qdf->f", c, p, x) - (c[:, None] * x[rows, gold]).sum(axis=0)
        return nll + penalty * w @ w, grad + 2 * penalty * w

    start = np.zeros(len(FEATURES))
    start[FEATURES.index("fused_rel")] = 1.0
    return minimize(loss, start, jac=True, method="L-BFGS-B").x


def position(it: dict, weights: np.ndarray | None, mean: np.ndarray, scale: np.ndarray, policy: str = "order") -> int:
    """0-based place of the gold occupation after re-ranking (fused order when `weights` is None); 99 if absent."""
    if it["gold"] < 0:
        return 99
    if weights is None:
        return it["gold"]
    s = ((it["x"] - mean) / scale) @ weights
    if policy == "promote":
        best = int(np.argmax(s))
        return 0 if best == it["gold"] else it["gold"] + int(it["gold"] < best)
    return int(np.sum(s > s[it["gold"]]) + np.sum(s[: it["gold"]] == s[it["gold"]]))


def recall(items: Sequence[dict], weights: np.ndarray | None, mean: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    places = [position(it, weights, mean, scale) for it in items]
    n = max(len(places), 1)
    return {"recall@1": round(sum(p < 1 for p in places) / n, 4), "recall@5": round(sum(p < 5 for p in places) / n, 4)}


def at_depth(items: Sequence[dict], depth: int) -> list[dict]:
    """The items as a re-ranker of the fused top `depth` sees them."""
    return [{**it, "x": it["x"][:depth], "gold": it["gold"] if it["gold"] < depth else -1} for it in items]


def cross_validate(pseudo: list[dict], dev: list[dict], mean: np.ndarray, scale: np.ndarray) -> dict[str, dict]:
    """Per recipe (depth, penalty, dev and description weights, policy): dev Recall@1/@5 out of fold (folds by gold
    occupation). `pseudo` holds the pseudo-queries and the student descriptions (always trained on)."""
    out: dict[str, dict] = {"fused": {f: recall([d for d in dev if d["family"] == f], None, mean, scale) for f in DEV_FILES}}
    for depth in DEPTHS:
        p_items, d_items = at_depth(pseudo, depth), at_depth(dev, depth)
        for penalty, weight, described in itertools.product(PENALTIES, DEV_WEIGHTS, DESCRIBED_WEIGHTS):
            held: dict[int, np.ndarray] = {}
            for k in range(FOLDS):
                w = fit(p_items + [d for d in d_items if _fold(d["code"]) != k], penalty, mean, scale,
                        {"dev": weight, "described": described})
                held.update({i: w for i, d in enumerate(d_items) if _fold(d["code"]) == k})
            for policy in POLICIES:
                places = {f: [position(d, held[i], mean, scale, policy) if d["gold"] >= 0 else
                              (dev[i]["gold"] if dev[i]["gold"] >= 0 else 99)
                              for i, d in enumerate(d_items) if d["family"] == f] for f in DEV_FILES}
                out[f"depth={depth},penalty={penalty},dev_weight={weight},described_weight={described},policy={policy}"] = {
                    f: {"recall@1": round(sum(p < 1 for p in ps) / len(ps), 4),
                        "recall@5": round(sum(p < 5 for p in ps) / len(ps), 4)} for f, ps in places.items()}
    return out


def _score(figures: dict[str, dict]) -> float:
    """The selection rule: mean over the dev files of Recall@1 + Recall@5."""
    return sum(v["recall@1"] + v["recall@5"] for v in figures.values()) / len(figures)


def train(retriever: HybridRetriever, n: int, seed: int, cache: Path | None = None) -> Reranker:
    t0 = time.perf_counter()
    if cache is not None and cache.exists():
        pseudo, dev, counts = pickle.loads(cache.read_bytes())
    else:
        with Progress() as progress:
            pseudo, counts = collect_pseudo(retriever, n, seed, progress)
            pseudo += collect_file(retriever, DESCRIPTIONS, "described", progress)
            dev = collect_dev(retriever, progress)
        if cache is not None:
            cache.write_bytes(pickle.dumps((pseudo, dev, counts)))
    stacked = np.vstack([it["x"] for it in pseudo + dev])
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0)
    scale[scale < 1e-6] = 1.0
    grid = cross_validate(pseudo, dev, mean, scale)
    best = max((k for k in grid if k != "fused"), key=lambda k: (_score(grid[k]), k))
    recipe = dict(part.split("=") for part in best.split(","))
    depth, penalty, policy = int(recipe["depth"]), float(recipe["penalty"]), recipe["policy"]
    weight_of = {"dev": float(recipe["dev_weight"]), "described": float(recipe["described_weight"])}
    weights = fit(at_depth(pseudo + dev, depth), penalty, mean, scale, weight_of)
    meta = {
        "procedure": "assistant/retrieval/train_reranker.py", "seed": seed,
        "pseudo_queries": sum(it["source"] == "pseudo" for it in pseudo),
        "student_descriptions": sum(it["source"] == "described" for it in pseudo),
        "dev_questions": len(dev), **counts, "chosen": best,
        "dev_out_of_fold": {"fused": grid["fused"], "reranked": grid[best]},
        "grid": {k: round(_score(v), 4) for k, v in grid.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return Reranker(retriever.embedder.model_id, weights, mean, scale, depth=depth, policy=policy, meta=meta)


def main(argv: Sequence[str] | None = None) -> None:
    from db.settings import Settings
    from ingest.knowledge import open_knowledge

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2500, help="occupations to sample (default 2500)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", type=Path, help="where to write the weights (default data/retrieval/reranker-<model>.json)")
    parser.add_argument("--cache", type=Path, help="keep the collected candidates in this file (re-runs skip retrieval)")
    args = parser.parse_args(argv)
    settings = Settings()
    know = open_knowledge(settings.database_url(None), settings.index_dir, settings.embedder)
    retriever = HybridRetriever(know.factory, know.embedder, know.store(), rerank=False)
    reranker = train(retriever, args.n, args.seed, args.cache)
    out = args.out or default_path(reranker.model_id)
    reranker.save(out)
    print(json.dumps(reranker.meta, ensure_ascii=False, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
