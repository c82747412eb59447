"""Train the crisis classifier and choose its thresholds, on dev data only.

    python -m assistant.safety.train            # writes data/safety/crisis_model.npz and prints the dev figures

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
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.sparse import csr_matrix

from assistant.safety.bank import BANK_FILES, OLD_DEV, career_questions, chatbot_questions, load_bank, read_items, split_of
from assistant.safety.classifier import (
    CRISIS_LABELS, LABELS, MODEL_PATH, N_FEATURES, CrisisModel, Thresholds, features, file_sha256,
)
from assistant.safety.rules import match_rules
from assistant.text_features import matrix as text_matrix

C = 32.0  # inverse L2 strength, chosen on dev folds (8-64 tried)
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


def fit(x: csr_matrix, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression  # training only: the product scores with numpy

    present = np.unique(y)
    counts = np.bincount(y, minlength=len(LABELS))
    weight = {k: min(20.0, len(y) / (len(present) * counts[k])) for k in present}  # balanced, capped
    return LogisticRegression(C=C, max_iter=3000, class_weight=weight).fit(x, y)


def out_of_fold(x: csr_matrix, y: np.ndarray, groups: list[str]) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    proba = np.zeros((len(y), len(LABELS)))
    for train, test in GroupKFold(n_splits=FOLDS).split(x, y, groups):
        model = fit(x[train], y[train])
        proba[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
    return proba


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


def train(out=MODEL_PATH) -> dict:
    t0 = time.perf_counter()
    texts, labels, groups, kinds = training_set()
    y = np.array([LABELS.index(label) for label in labels])
    x = matrix(texts)
    th, report = choose_thresholds(out_of_fold(x, y, groups), y, kinds)
    model = fit(x, y)
    weights = np.zeros((N_FEATURES, len(LABELS)), dtype=np.float32)
    weights[:, model.classes_] = model.coef_.T
    bias = np.full(len(LABELS), -30.0, dtype=np.float32)
    bias[model.classes_] = model.intercept_
    used = np.flatnonzero(np.abs(weights).sum(axis=1) > 0)
    CrisisModel(used, weights[used], bias, th, file_sha256(BANK_FILES["dev"])).save(out)
    counts = {label: labels.count(label) for label in LABELS}
    return {"examples": len(texts), "per_label": counts, "thresholds": th.__dict__, **report,
            "crisis_labels": list(CRISIS_LABELS), "seconds": round(time.perf_counter() - t0, 1), "model": str(out)}


if __name__ == "__main__":
    import json

    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0)
    print(json.dumps(train(), ensure_ascii=False, indent=1))
