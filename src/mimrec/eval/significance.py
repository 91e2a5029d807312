"""Is a model's lead over the baseline more than the luck of the test users? A paired bootstrap.

Each resample draws the test users with replacement (a user's impressions stay together: they
share the user's taste, so they are not independent) and scores the model and the baseline on the
same draw. The differences are the model's AUC (gAUC) minus the baseline's, averaged over the
seeds both were trained with (seed k against seed k), as the report's means are. The interval is
the 2.5th to 97.5th percentile over resamples: how much the difference moves with which users the
test split happens to hold. The seed-to-seed spread is the report's ± std beside it.
"""

from __future__ import annotations

import warnings

import numpy as np

from mimrec.data.samples import BUCKETS
from mimrec.eval.metrics import user_aucs


class WeightedAuc:
    """AUC of one score vector under per-row weights (a bootstrap draw's multiplicities).

    Sorts once; each call is then two ``bincount`` passes, O(N). Ties count one half.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        scores = np.asarray(scores, float)
        self.order = np.argsort(scores, kind="stable")
        ranked = scores[self.order]
        self.labels = np.asarray(labels, float)[self.order]
        self.group = np.cumsum(np.r_[True, ranked[1:] != ranked[:-1]]) - 1  # tie groups
        self.groups = int(self.group[-1]) + 1 if len(ranked) else 0

    def __call__(self, weights: np.ndarray) -> float:
        w = np.asarray(weights, float)[self.order]
        pos = np.bincount(self.group, weights=w * self.labels, minlength=self.groups)
        neg = np.bincount(self.group, weights=w * (1.0 - self.labels), minlength=self.groups)
        below = np.cumsum(neg) - neg  # negative weight scored strictly lower, per group
        denominator = pos.sum() * neg.sum()
        if denominator == 0:
            return float("nan")
        return float((pos * (below + 0.5 * neg)).sum() / denominator)


def paired_bootstrap(users: np.ndarray, labels: np.ndarray, model: dict[int, np.ndarray],
                     base: dict[int, np.ndarray], resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict | None:
    """ΔAUC and ΔgAUC of ``model`` over ``base`` (probabilities per training seed, test rows in
    order), with their bootstrap intervals; None when the two share no seed.

    Returns ``delta_auc``, ``delta_auc_interval`` [low, high], ``delta_gauc``,
    ``delta_gauc_interval``, ``resamples``, ``seeds`` (the paired seeds) and ``level``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    seeds = sorted(set(model) & set(base))
    if not seeds:
        return None
    ids, row_user = np.unique(np.asarray(users), return_inverse=True)
    auc_pairs = [(WeightedAuc(labels, model[s]), WeightedAuc(labels, base[s])) for s in seeds]
    per_user = []  # (user index, impressions, model AUC - base AUC) per seed
    for s in seeds:
        uid, model_auc, sizes = user_aucs(users, labels, model[s])
        _, base_auc, _ = user_aucs(users, labels, base[s])  # same users: they depend on labels
        per_user.append((np.searchsorted(ids, uid), sizes, model_auc - base_auc))

    def deltas(user_weight: np.ndarray) -> tuple[float, float]:
        row_weight = user_weight[row_user]
        d_auc = np.mean([m(row_weight) - b(row_weight) for m, b in auc_pairs])
        d_gauc = np.mean([np.average(diff, weights=sizes * user_weight[index])
                          if (sizes * user_weight[index]).sum() > 0 else np.nan
                          for index, sizes, diff in per_user])
        return float(d_auc), float(d_gauc)

    point = deltas(np.ones(len(ids)))
    rng = np.random.default_rng(seed)
    draws = np.array([deltas(np.bincount(rng.integers(0, len(ids), len(ids)),
                                         minlength=len(ids)).astype(float))
                      for _ in range(resamples)])  # (resamples, 2)
    tail = (1.0 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)  # (2,) each
    return {"delta_auc": point[0], "delta_auc_interval": [float(low[0]), float(high[0])],
            "delta_gauc": point[1], "delta_gauc_interval": [float(low[1]), float(high[1])],
            "resamples": resamples, "seeds": seeds, "level": level}


def bucket_bootstrap(users: np.ndarray, labels: np.ndarray, buckets: np.ndarray,
                     model: dict[int, np.ndarray], base: dict[int, np.ndarray],
                     resamples: int = 1000, seed: int = 0,
                     names: tuple[str, ...] = BUCKETS) -> dict[str, dict | None]:
    """:func:`paired_bootstrap` on each popularity bucket's rows alone (its users resampled).

    Returns, per bucket name, the bootstrap result plus ``n`` (rows), ``users`` and
    ``resolved`` (the AUC interval excludes 0); None for a bucket without both labels.
    """
    out: dict[str, dict | None] = {}
    for code, name in enumerate(names):
        rows = buckets == code
        if not rows.any() or labels[rows].min() == labels[rows].max():
            out[name] = None
            continue
        with warnings.catch_warnings():  # a bucket may hold no user with both labels: gAUC NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            result = paired_bootstrap(users[rows], labels[rows],
                                      {s: p[rows] for s, p in model.items()},
                                      {s: p[rows] for s, p in base.items()}, resamples, seed)
        if result is not None:
            low, high = result["delta_auc_interval"]
            result |= {"n": int(rows.sum()), "users": int(len(np.unique(users[rows]))),
                       "resolved": bool(low > 0 or high < 0)}
        out[name] = result
    return out


def bootstrap_rows(users: np.ndarray, max_rows: int, seed: int = 0,
                   chunk_rows: int = 1_000_000) -> np.ndarray:
    """Row indices (ascending) of a random sample of whole users holding at most ``max_rows``
    rows (users taken in a seeded random order while they fit), for bootstrapping a split too
    large to resample whole. ``users``: non-negative integer ids, read in chunks."""
    counts = np.zeros(0, np.int64)
    for start in range(0, len(users), chunk_rows):
        c = np.bincount(np.asarray(users[start:start + chunk_rows], np.int64))
        counts = np.r_[counts, np.zeros(max(0, len(c) - len(counts)), np.int64)]
        counts[:len(c)] += c
    order = np.random.default_rng(seed).permutation(len(counts))
    fits = np.cumsum(counts[order]) <= max_rows
    chosen = np.zeros(len(counts), bool)
    chosen[order[fits]] = True
    return np.concatenate([start + np.flatnonzero(chosen[np.asarray(users[start:start + chunk_rows],
                                                                     np.int64)])
                           for start in range(0, len(users), chunk_rows)] or [np.zeros(0, int)])
