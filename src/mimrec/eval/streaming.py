"""CTR metrics of a split too large to copy whole: exact AUC, gAUC, LogLoss and per-bucket AUC
read a chunk of rows at a time from memory-mapped (or in-memory) columns.

Memory follows ``chunk_rows``, not the split:

- **AUC** (overall and per bucket) is the Mann-Whitney statistic, ties counted one half, summed
  in integers: the score axis is cut into ``ceil(N / chunk_rows)`` ranges at quantiles of a
  strided sample of the scores; each range is read in one pass over the chunks, keeping only its
  distinct scores with their click / non-click counts per bucket. Ranges are taken in ascending
  order, so every positive is credited with the negatives of lower ranges as a running count.
  The result is exact whatever the cut points; they only decide how many rows one range holds.
- **gAUC** cuts the user ids into ranges of about ``chunk_rows`` rows (from the per-user row
  counts, one integer per user id); each range's rows are gathered in one pass and scored with
  :func:`~mimrec.eval.metrics.user_aucs`, the in-memory code, so every user's AUC is the same
  number as in memory.
- **LogLoss** and bucket sizes are sums over chunks.

The in-memory :func:`~mimrec.eval.metrics.ctr_metrics` (scikit-learn's AUC) is what splits of
up to ``stream_above`` rows use (:func:`split_metrics`), so small datasets' numbers do not
change; the two agree to about 1e-12 (``tests/eval/test_streaming.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from mimrec.data.samples import BUCKETS
from mimrec.eval.config import CHUNK_ROWS, STREAM_ABOVE_ROWS
from mimrec.eval.metrics import auc, ctr_metrics, user_aucs

SAMPLE_PER_RANGE = 64  # strided score samples per range when choosing the cut points


def split_metrics(users: np.ndarray, labels: np.ndarray, probs: np.ndarray, buckets: np.ndarray,
                  names: tuple[str, ...] = BUCKETS, stream_above: int = STREAM_ABOVE_ROWS,
                  chunk_rows: int = CHUNK_ROWS) -> dict:
    """:func:`~mimrec.eval.metrics.ctr_metrics` in memory up to ``stream_above`` rows, else
    :func:`stream_ctr_metrics` (same keys)."""
    if len(labels) <= stream_above:
        return ctr_metrics(np.asarray(users), np.asarray(labels), np.asarray(probs),
                           np.asarray(buckets), names)
    return stream_ctr_metrics(users, labels, probs, buckets, names, chunk_rows)


def split_auc(labels: np.ndarray, scores: np.ndarray, stream_above: int = STREAM_ABOVE_ROWS,
              chunk_rows: int = CHUNK_ROWS) -> float:
    """:func:`~mimrec.eval.metrics.auc` in memory up to ``stream_above`` rows, else
    :func:`stream_auc` (the valid AUC that early stopping reads each epoch)."""
    if len(labels) <= stream_above:
        return auc(labels, scores)
    return stream_auc(labels, scores, chunk_rows=chunk_rows)[0]


def stream_ctr_metrics(users: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                       buckets: np.ndarray, names: tuple[str, ...] = BUCKETS,
                       chunk_rows: int = CHUNK_ROWS) -> dict:
    """AUC, gAUC, LogLoss and per-bucket AUC with bucket sizes, as ``ctr_metrics`` returns
    them, reading every column ``chunk_rows`` rows at a time.

    Args:
        users: (N,) non-negative integer user ids (rows of one user need not be adjacent).
        labels: (N,) 0 / 1.
        probs: (N,) predicted probabilities (finite).
        buckets: (N,) bucket codes indexing ``names``.
        names: the bucket names.
        chunk_rows: rows read at a time; memory is a few times this, plus 8 bytes a user id.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    overall, per_bucket = stream_auc(labels, probs, buckets, len(names), chunk_rows)
    sizes = np.zeros(len(names), np.int64)
    for rows in _chunks(len(labels), chunk_rows):
        sizes += np.bincount(np.asarray(buckets[rows], np.int64), minlength=len(names))
    return {"auc": overall, "gauc": stream_gauc(users, labels, probs, chunk_rows),
            "logloss": stream_logloss(labels, probs, chunk_rows),
            "buckets": {name: {"auc": per_bucket[b], "n": int(sizes[b])}
                        for b, name in enumerate(names)}}


def _chunks(n: int, chunk_rows: int) -> Iterator[slice]:
    for start in range(0, n, chunk_rows):
        yield slice(start, min(start + chunk_rows, n))


def _cut_points(scores: np.ndarray, ranges: int) -> np.ndarray:
    """Ascending score values that cut the scores into about ``ranges`` equal parts (quantiles
    of every k-th score)."""
    if ranges <= 1:
        return np.zeros(0)
    stride = max(1, len(scores) // (ranges * SAMPLE_PER_RANGE))
    sample = np.sort(np.asarray(scores[::stride], np.float64))
    at = (np.arange(1, ranges) * len(sample)) // ranges
    return np.unique(sample[at])


def _fold(values: np.ndarray, counts: np.ndarray, parts: list, n_groups: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Merge gathered ``(scores, labels, groups)`` parts into the distinct ``values`` (ascending)
    and their (V, G + 1, 2) non-click / click ``counts`` (last group column: every row)."""
    s, y, g = (np.concatenate(p) for p in zip(*parts, strict=True))
    width = 2 * (n_groups + 1)
    uniq, inverse = np.unique(np.r_[values, s], return_inverse=True)
    merged = np.zeros((len(uniq), width), np.int64)
    merged[inverse[:len(values)]] = counts.reshape(len(values), width)  # old values: distinct
    new = inverse[len(values):]
    cell = new * width + n_groups * 2 + y  # the every-row column
    if n_groups:
        cell = np.r_[cell, new * width + g * 2 + y]
    merged += np.bincount(cell, minlength=len(uniq) * width).reshape(len(uniq), width)
    return uniq, merged.reshape(len(uniq), n_groups + 1, 2)


def _range_counts(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None,
                  n_groups: int, low: float, high: float, chunk_rows: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct scores in ``[low, high)`` (ascending) and their (V, G + 1, 2) counts of
    non-clicks / clicks per group, the last group column being every row. Rows are gathered
    until ``chunk_rows`` are pending, then folded into the counts (ties take one entry)."""
    values, counts = np.zeros(0), np.zeros((0, n_groups + 1, 2), np.int64)
    parts, pending = [], 0
    for rows in _chunks(len(labels), chunk_rows):
        s = np.asarray(scores[rows], np.float64)
        keep = (s >= low) & (s < high)
        if not keep.any():
            continue
        g = (np.asarray(groups[rows], np.int64)[keep] if groups is not None
             else np.zeros(int(keep.sum()), np.int64))
        parts.append((s[keep], np.asarray(labels[rows], np.int64)[keep], g))
        pending += len(g)
        if pending >= chunk_rows:
            values, counts = _fold(values, counts, parts, n_groups)
            parts, pending = [], 0
    if parts:
        values, counts = _fold(values, counts, parts, n_groups)
    return values, counts


def stream_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None,
               n_groups: int = 0, chunk_rows: int = CHUNK_ROWS) -> tuple[float, list[float]]:
    """Exact ROC-AUC of all rows and of each group's rows (ties one half; NaN without both
    classes), reading ``chunk_rows`` rows at a time.

    Returns ``(auc of all rows, [auc of group 0, ..., group n_groups - 1])``.
    """
    n = len(labels)
    cuts = _cut_points(scores, max(1, math.ceil(n / chunk_rows)))
    edges = [-np.inf, *cuts.tolist(), np.inf]
    neg_below = np.zeros(n_groups + 1, np.int64)
    pos_total = np.zeros(n_groups + 1, np.int64)
    twice_wins = [0] * (n_groups + 1)  # 2 x (pairs won + half the ties), exact integers
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        _, counts = _range_counts(labels, scores, groups, n_groups, low, high, chunk_rows)
        neg, pos = counts[:, :, 0], counts[:, :, 1]  # (V, G + 1)
        below = neg_below + np.cumsum(neg, axis=0) - neg
        wins = (pos * (2 * below + neg)).sum(axis=0)
        twice_wins = [a + int(b) for a, b in zip(twice_wins, wins, strict=True)]
        neg_below += neg.sum(axis=0)
        pos_total += pos.sum(axis=0)
    if int(pos_total[-1] + neg_below[-1]) != n:  # a NaN score falls in no range
        raise ValueError(f"scores must be finite: {n - int(pos_total[-1] + neg_below[-1])} "
                         "of the rows are not")
    aucs = [w / (2 * int(p) * int(q)) if p and q else float("nan")
            for w, p, q in zip(twice_wins, pos_total, neg_below, strict=True)]
    return aucs[-1], aucs[:-1]


def _user_cuts(users: np.ndarray, chunk_rows: int) -> tuple[np.ndarray, int]:
    """User-id boundaries of ranges holding about ``chunk_rows`` rows each, and the number of
    distinct users."""
    per_user = np.zeros(0, np.int64)
    for rows in _chunks(len(users), chunk_rows):
        u = np.asarray(users[rows], np.int64)
        if len(u) and u.min() < 0:
            raise ValueError(f"user ids must be >= 0 to stream gAUC, got {int(u.min())}")
        c = np.bincount(u)
        if len(c) > len(per_user):
            per_user = np.r_[per_user, np.zeros(len(c) - len(per_user), np.int64)]
        per_user[:len(c)] += c
    total = np.cumsum(per_user)
    targets = np.arange(chunk_rows, int(total[-1]) if len(total) else 0, chunk_rows)
    cuts = np.unique(np.searchsorted(total, targets, side="right"))
    return np.r_[0, cuts, len(per_user)], int(np.count_nonzero(per_user))


def stream_gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                chunk_rows: int = CHUNK_ROWS) -> float:
    """Impression-weighted mean of per-user AUCs (users with both classes), as
    :func:`~mimrec.eval.metrics.gauc`, gathering about ``chunk_rows`` rows (whole users) at a
    time."""
    bounds, _ = _user_cuts(users, chunk_rows)
    weighted, weight = 0.0, 0
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        parts = []
        for rows in _chunks(len(users), chunk_rows):
            u = np.asarray(users[rows], np.int64)
            keep = (u >= low) & (u < high)
            if keep.any():
                parts.append((u[keep], np.asarray(labels[rows])[keep],
                              np.asarray(scores[rows])[keep]))
        if not parts:
            continue
        _, user_auc, sizes = user_aucs(*(np.concatenate(p) for p in zip(*parts, strict=True)))
        weighted += float((user_auc * sizes).sum())
        weight += int(sizes.sum())
    return weighted / weight if weight else float("nan")


def stream_logloss(labels: np.ndarray, probs: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> float:
    """Mean binary cross-entropy, probabilities clipped to 1e-7 as
    :func:`~mimrec.eval.metrics.logloss`."""
    total = 0.0
    for rows in _chunks(len(labels), chunk_rows):
        p = np.clip(np.asarray(probs[rows], np.float64), 1e-7, 1 - 1e-7)
        y = np.asarray(labels[rows], np.float64)
        total += float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum())
    return total / len(labels) if len(labels) else float("nan")


def count_users(users: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> int:
    """Distinct user ids of a column read in chunks (non-negative integer ids)."""
    return _user_cuts(users, chunk_rows)[1]
