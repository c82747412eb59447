"""Train the crisis classifier and choose its thresholds, on dev data only.

    python -m assistant.safety.train                        # writes data/safety/crisis_model.npz, prints dev figures
    python -m assistant.safety.train --cache /tmp/e5.npz    # keep the e5 vectors (~5 min to embed) for re-runs

Training data (assistant.safety.bank): the dev half of the bank (context windows read as their turns joined by
spaces, as `detect_crisis` reads them), data/eval/safety_dev.jsonl, the dev half of ChatbotData questions the rules neither flag nor read as
distress, and the template career questions.  Nothing of the blind half, and none of data/eval/'s career questions.

Thresholds come from out-of-fold probabilities (5 folds grouped by situation) on the same data:
    crisis   P(crisis) flagging at most FP_BUDGET of ChatbotData (the safe script must not answer everyday sadness);
    watch    P(crisis) catching RECALL_TARGET of dev crisis messages: between watch and crisis a message gets the
             concern check-in (1388, how are you), careful mode and a review — the net under the budgeted threshold;
    careful  P(concern or crisis) catching RECALL_TARGET_CAREFUL of crisis and concern messages (after a crisis),
             raised where needed to flag at most CAREFUL_FP_BUDGET of ChatbotData and no template career question;
    context  the crisis budget, on the last few turns read together;
    concern  the best F1 of concern-or-crisis against none.

The sentence head (a one-hidden-layer network over each message's e5-small query vector, classes balanced by
repeating the rarer ones) is trained on the same data;
the nearest-neighbour vote over the same vectors (`classifier.Neighbours`) takes `share` of the sentence side; the
n-gram head's share (`mix`) and `share` are the pair of MIXES x SHARES whose out-of-fold probabilities catch the most
dev crisis messages at the crisis threshold, and the mixture gets its own thresholds by the rules above.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from assistant.safety.bank import BANK_FILES, OLD_DEV, career_questions, chatbot_questions, load_bank, read_items, split_of
from assistant.safety.classifier import (
    CRISIS_LABELS, LABELS, MODEL_PATH, CrisisModel, Neighbours, SentenceHead, Thresholds, features, file_sha256,
)
from assistant.safety.rules import match_rules
from assistant.text_features import matrix as text_matrix

C = 32.0  # inverse L2 strength, chosen on dev folds (8-64 tried)
SENTENCE_HIDDEN, SENTENCE_ALPHA, SENTENCE_EPOCHS = 256, 1e-5, 60  # chosen on dev folds after round 11: crisis recall
# 0.9235 (alpha 1e-3), 0.9265 (1e-4), 0.9281 (1e-5); hidden 512: 0.9221; 100 epochs: same; logistic regression: -0.03
SENTENCE_SCALE = 4.9  # the centred, normalised vector's length the network reads (~ sqrt(dim) / 4)
SENTENCE_MODEL = "e5-small"
MIXES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the n-gram head's share tried
SHARES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the nearest neighbours' share of the sentence head tried
NEIGHBOURS_K, NEIGHBOURS_TEMPERATURE = 10, 20.0  # chosen on dev folds (k 10-30, temperature 10-50)
RECALL_TARGET, RECALL_TARGET_CAREFUL, FP_BUDGET, CAREFUL_FP_BUDGET = 0.98, 0.99, 0.003, 0.05  # FP: 0.5% target less a margin
FOLDS, SEED = 5, 15


def training_set() -> tuple[list[str], list[str], list[str], list[str]]:
    """(texts, labels, groups, kinds): kind is bank | context | chatbot | career."""
    texts, labels, groups, kinds = [], [], [], []
    for item in load_bank("dev") + read_items(OLD_DEV):
        texts.append(" ".join(item.turns))
        labels.append(item.label)
        groups.append(item.group)
        kinds.append("context" if len(item.turns) > 1 else "bank")
    for q in chatbot_questions():
        if split_of(q) == "dev":
            r = match_rules(q)
            if not r.crisis and not r.distress:
                texts.append(q), labels.append("none"), groups.append("cd:" + q), kinds.append("chatbot")
    for q in career_questions():
        texts.append(q), labels.append("none"), groups.append("career:" + q), kinds.append("career")
    return texts, labels, groups, kinds


def matrix(texts: list[str]) -> csr_matrix:
    return text_matrix(texts, features)


def sentence_vectors(texts: list[str], cache: Path | None = None) -> np.ndarray:
    """Each text's e5-small query vector (`cache`: an .npz of texts and vectors, read and extended)."""
    from rich.progress import Progress

    from ingest.embedding import load_embedder

    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            known = dict(zip(z["texts"].tolist(), z["vectors"]))
    missing = sorted(set(texts) - set(known))
    if missing:
        embedder = load_embedder(SENTENCE_MODEL)
        with Progress() as progress:
            task = progress.add_task(f"embedding {len(missing)} messages with {SENTENCE_MODEL}", total=len(missing))
            for i in range(0, len(missing), 64):
                batch = missing[i : i + 64]
                known.update(zip(batch, embedder.embed_query(batch)))
                progress.advance(task, len(batch))
                if cache is not None and (i // 64) % 50 == 49:  # every ~3,200 messages: an interrupted run resumes
                    _save(cache, known)
        if cache is not None:
            _save(cache, known)
    return np.stack([known[t] for t in texts]).astype(np.float32)


def _save(cache: Path, known: dict[str, np.ndarray]) -> None:
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
    tmp.replace(cache)


def centred(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    v = vectors - mean
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)


def fit(x, y: np.ndarray):
    """The n-gram head: logistic regression, classes balanced by weight (capped)."""
    from sklearn.linear_model import LogisticRegression  # training only: the product scores with numpy

    present = np.unique(y)
    counts = np.bincount(y, minlength=len(LABELS))
    weight = {k: min(20.0, len(y) / (len(present) * counts[k])) for k in present}  # balanced, capped
    return LogisticRegression(C=C, max_iter=3000, class_weight=weight).fit(x, y)


def fit_sentence(x: np.ndarray, y: np.ndarray):
    """The sentence head: an MLP on the scaled vectors, each rarer class repeated up to 8 times."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    counts = np.bincount(y, minlength=len(LABELS))
    repeat = np.clip(counts.max() / (counts + 1) / 3, 1, 8).astype(int)
    rows = np.concatenate([np.repeat(np.flatnonzero(y == k), repeat[k]) for k in range(len(LABELS))])
    with warnings.catch_warnings():  # a fixed number of epochs, chosen on dev folds
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden_layer_sizes=(SENTENCE_HIDDEN,), alpha=SENTENCE_ALPHA, max_iter=SENTENCE_EPOCHS,
                             random_state=SEED).fit(x[rows], y[rows])


def out_of_fold(x, y: np.ndarray, groups: list[str], fit_head=fit) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    proba = np.zeros((len(y), len(LABELS)))
    for train, test in GroupKFold(n_splits=FOLDS).split(x, y, groups):
        model = fit_head(x[train], y[train])
        proba[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
    return proba


def neighbours_out_of_fold(e: np.ndarray, y: np.ndarray, groups: list[str]) -> np.ndarray:
    """Out-of-fold votes of the nearest neighbours (`classifier.Neighbours`) over centred, normalised vectors."""
    from sklearn.model_selection import GroupKFold

    proba = np.zeros((len(y), len(LABELS)))
    for train_rows, test in GroupKFold(n_splits=FOLDS).split(e, y, groups):
        nb = Neighbours(e[train_rows], y[train_rows], NEIGHBOURS_K, NEIGHBOURS_TEMPERATURE, 1.0)
        for i in test:
            proba[i] = nb.vote(e[i])
    return proba


def _weights(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs × labels) weights and the bias of an output layer over `classes`, with every label (one training
    never saw scores -30)."""
    weights = np.zeros((coef.shape[0], len(LABELS)), dtype=np.float32)
    weights[:, classes] = coef
    bias = np.full(len(LABELS), -30.0, dtype=np.float32)
    bias[classes] = intercept
    return weights, bias


def _budget(p_neg: np.ndarray, fp_budget: float) -> float:
    """The lowest threshold that flags at most `fp_budget` of p_neg."""
    return float(np.quantile(p_neg, 1 - fp_budget)) if len(p_neg) else 0.5


def _recall(p_pos: np.ndarray, recall: float) -> float:
    """The highest threshold that flags at least `recall` of p_pos."""
    return float(np.quantile(p_pos, 1 - recall)) if len(p_pos) else 0.5


def choose_thresholds(proba: np.ndarray, y: np.ndarray, kinds: list[str]) -> tuple[Thresholds, dict]:
    kinds_a = np.array(kinds)
    p_crisis = proba[:, 2:].sum(axis=1)
    p_alarm = p_crisis + proba[:, 1]
    is_crisis, is_concern = y >= 2, y == 1
    single, ctx, chat = kinds_a == "bank", kinds_a == "context", kinds_a == "chatbot"
    t_crisis = _budget(p_crisis[chat], FP_BUDGET)
    t_watch = min(_recall(p_crisis[single & is_crisis], RECALL_TARGET), t_crisis)
    t_careful = min(max(_recall(p_alarm[single & (is_crisis | is_concern)], RECALL_TARGET_CAREFUL),
                        _budget(p_alarm[chat], CAREFUL_FP_BUDGET), _budget(p_alarm[kinds_a == "career"], 0.0)), t_crisis)
    t_context = max(_budget(p_crisis[chat], FP_BUDGET), t_watch)
    best, t_concern = -1.0, 0.5
    for t in np.linspace(0.05, 0.95, 91):
        pred, gold = p_alarm[single] >= t, (is_crisis | is_concern)[single]
        tp = float((pred & gold).sum())
        f1 = 2 * tp / max(pred.sum() + gold.sum(), 1)
        if f1 > best:
            best, t_concern = f1, float(t)
    th = Thresholds(*(round(v, 4) for v in (t_crisis, t_watch, t_careful, t_context, t_concern)))
    caught = p_crisis[single & is_crisis]
    report = {
        "dev_oof_recall_crisis": round(float((caught >= th.crisis).mean()), 4),
        "dev_oof_recall_crisis_or_watch": round(float((caught >= th.watch).mean()), 4),
        "dev_oof_recall_context": round(float((p_crisis[ctx & is_crisis] >= th.context).mean()), 4),
        "dev_oof_fp_chatbot": round(float((p_crisis[chat] >= th.crisis).mean()), 4),
        "dev_oof_fp_career": round(float((p_crisis[kinds_a == "career"] >= th.crisis).mean()), 4),
        "dev_oof_fp_hard_negatives": round(float((p_crisis[single & (y == 0)] >= th.crisis).mean()), 4),
        "dev_oof_concern_f1": round(best, 4),
        "dev_oof_watch_chatbot": round(float((p_crisis[chat] >= th.watch).mean()), 4),
        "dev_oof_watch_career": round(float((p_crisis[kinds_a == "career"] >= th.watch).mean()), 4),
        "dev_oof_watch_hard_negatives": round(float((p_crisis[single & (y == 0)] >= th.watch).mean()), 4),
    }
    return th, report


def train(out: Path = MODEL_PATH, cache: Path | None = None) -> dict:
    t0 = time.perf_counter()
    texts, labels, groups, kinds = training_set()
    y = np.array([LABELS.index(label) for label in labels])
    x = matrix(texts)
    oof_ngrams = out_of_fold(x, y, groups)
    th, report = choose_thresholds(oof_ngrams, y, kinds)
    vectors = sentence_vectors(texts, cache)
    mean = vectors.mean(axis=0)
    e = centred(vectors, mean) * SENTENCE_SCALE
    oof_sentence = out_of_fold(e, y, groups, fit_sentence)
    unit = centred(vectors, mean)
    oof_neighbours = neighbours_out_of_fold(unit, y, groups)
    tried = {(mix, share): choose_thresholds(
        mix * oof_ngrams + (1 - mix) * ((1 - share) * oof_sentence + share * oof_neighbours), y, kinds)
        for mix in MIXES for share in SHARES}
    mix, share = max(tried, key=lambda m: (tried[m][1]["dev_oof_recall_crisis"], -tried[m][1]["dev_oof_fp_hard_negatives"]))
    th_mixed, report_mixed = tried[(mix, share)]
    ngrams = fit(x, y)
    weights, bias = _weights(ngrams.coef_.T, ngrams.intercept_, ngrams.classes_)
    used = np.flatnonzero(np.abs(weights).sum(axis=1) > 0)
    net = fit_sentence(e, y)
    head = SentenceHead(SENTENCE_MODEL, mean, SENTENCE_SCALE, net.coefs_[0], net.intercepts_[0],
                        *_weights(net.coefs_[1], net.intercepts_[1], net.classes_), mix, th_mixed,
                        Neighbours(unit, y, NEIGHBOURS_K, NEIGHBOURS_TEMPERATURE, share) if share else None)
    CrisisModel(used, weights[used], bias, th, file_sha256(BANK_FILES["dev"]), head).save(out)
    counts = {label: labels.count(label) for label in LABELS}
    return {"examples": len(texts), "per_label": counts, "ngrams": {"thresholds": th.__dict__, **report},
            "ngrams+sentence": {"mix": mix, "neighbour_share": share, "thresholds": th_mixed.__dict__, **report_mixed},
            "mixes_tried": {f"{m}/{sh}": tried[(m, sh)][1]["dev_oof_recall_crisis"] for m, sh in tried},
            "crisis_labels": list(CRISIS_LABELS), "seconds": round(time.perf_counter() - t0, 1), "model": str(out)}


def main(argv: list[str] | None = None) -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="where to write the model")
    parser.add_argument("--cache", type=Path, help="an .npz of e5 vectors already computed (read and extended)")
    args = parser.parse_args(argv)
    print(json.dumps(train(args.out, args.cache), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
