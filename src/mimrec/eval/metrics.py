"""CTR metrics, written once: AUC, gAUC, LogLoss, RelaImpr, AUC per popularity bucket.

Definitions follow shared/protocol.md: gAUC is the per-user AUC averaged with weight = the user's
number of impressions, leaving out users whose labels are all 0 or all 1.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from mimrec.data.samples import BUCKETS


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC over all impressions (NaN when only one class is present)."""
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean of per-user AUCs over users with both classes (vectorised)."""
    _, user_auc, sizes = user_aucs(users, labels, scores)
    if not len(user_auc):
        return float("nan")
    return float(np.average(user_auc, weights=sizes))


def user_aucs(users: np.ndarray, labels: np.ndarray, scores: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user AUC of the users with both classes: their ids (sorted), AUCs and impression
    counts (the gAUC weights). Ties share their average rank (Mann-Whitney U)."""
    users, labels, scores = np.asarray(users), np.asarray(labels, float), np.asarray(scores, float)
    order = np.lexsort((scores, users))
    users, labels, scores = users[order], labels[order], scores[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, len(users)])
    group = np.repeat(np.arange(len(starts)), sizes)
    ranks = _group_ranks(group, scores)  # average ranks inside each user, ties shared (Mann-Whitney U)
    n_pos = np.bincount(group, weights=labels)
    n_neg = sizes - n_pos
    rank_sum = np.bincount(group, weights=ranks * labels)
    ok = (n_pos > 0) & (n_neg > 0)
    user_auc = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return users[starts][ok], user_auc, sizes[ok]


def _group_ranks(group: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1-based average ranks of ``scores`` within each group (input sorted by group, then score)."""
    new_value = np.r_[True, (group[1:] != group[:-1]) | (scores[1:] != scores[:-1])]
    tie_id = np.cumsum(new_value) - 1
    first = np.flatnonzero(new_value)
    tie_size = np.diff(np.r_[first, len(scores)])
    group_start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    pos_in_group = np.arange(len(scores)) - np.repeat(group_start, np.diff(np.r_[group_start,
                                                                                  len(scores)]))
    first_pos = pos_in_group[first]
    avg_rank = first_pos + (tie_size + 1) / 2
    return avg_rank[tie_id]


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy of predicted probabilities (clipped to 1e-7)."""
    probs = np.clip(np.asarray(probs, float), 1e-7, 1 - 1e-7)
    return float(log_loss(labels, probs, labels=[0, 1]))


def rela_impr(auc_model: float, auc_base: float) -> float:
    """RelaImpr in percent: ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100."""
    return float(((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0)


def ctr_metrics(users: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                buckets: np.ndarray, names: tuple[str, ...] = BUCKETS) -> dict:
    """AUC, gAUC, LogLoss and per-bucket AUC with bucket sizes (``buckets`` index ``names``)."""
    per_bucket = {}
    for b, name in enumerate(names):
        m = buckets == b
        per_bucket[name] = {"auc": auc(labels[m], probs[m]) if m.any() else float("nan"),
                            "n": int(m.sum())}
    return {"auc": auc(labels, probs), "gauc": gauc(users, labels, probs),
            "logloss": logloss(labels, probs), "buckets": per_bucket}
