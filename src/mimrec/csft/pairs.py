"""Positive pairs for C-SFT, from the TRAIN split only.

Behaviour pairs: each engaged train event of a user (the trigger) pairs with the same user's next
``window_steps`` engaged train events, optionally within ``window_seconds``. Any other pair source
(for instance image-search query -> purchased item, from logs that carry a query item) goes
through :func:`make_pairs` with its own weight, and sources are joined with :func:`concat_pairs`.
Every source drops self-pairs and duplicate (user, anchor, positive) triples and caps pairs per
user. Items are catalogue rows, as in :class:`~mimrec.data.samples.Samples`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mimrec.data.samples import TRAIN, Samples


@dataclass(frozen=True)
class Pairs:
    """Anchor -> positive item pairs.

    Shapes: every field (P,); anchor/positive are catalogue rows, user a user row, weight float32.
    """

    anchor: np.ndarray
    positive: np.ndarray
    user: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.anchor)


def _cap_per_user(user: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``cap`` randomly drawn entries per user, in input order."""
    if cap <= 0:
        return np.arange(len(user))
    order = np.lexsort((rng.random(len(user)), user))  # by user, random within user
    sorted_user = user[order]
    first = np.searchsorted(sorted_user, sorted_user, side="left")
    rank = np.arange(len(order)) - first  # position within the user's group
    return np.sort(order[rank < cap])


def make_pairs(anchor: np.ndarray, positive: np.ndarray, user: np.ndarray,
               weight: float | np.ndarray, max_per_user: int,
               rng: np.random.Generator) -> Pairs:
    """Pairs from parallel arrays: self-pairs and duplicates dropped, then capped per user.

    Args:
        anchor: trigger (or query) item rows.
        positive: the engaged item row of each anchor.
        user: the user row of each pair (the cap groups by it).
        weight: the pair weight, one for all or one per pair.
        max_per_user: keep at most this many pairs per user (seeded random draw); 0 = all.
        rng: draws the capped subset.

    Shapes: anchor, positive, user, weight (P,) -> Pairs of P' <= P.
    """
    anchor, positive, user = (np.asarray(a, dtype=np.int64) for a in (anchor, positive, user))
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float32), anchor.shape)
    keep = anchor != positive
    triples = np.stack([user, anchor, positive], axis=1)[keep]  # (P, 3)
    _, first = np.unique(triples, axis=0, return_index=True)
    rows = np.flatnonzero(keep)[np.sort(first)]  # first occurrence of each triple, input order
    rows = rows[_cap_per_user(user[rows], max_per_user, rng)]
    return Pairs(anchor[rows], positive[rows], user[rows], weight[rows].copy())


def behaviour_pairs(samples: Samples, min_label: float, window_steps: int, window_seconds: int,
                    max_per_user: int, weight: float, rng: np.random.Generator) -> Pairs:
    """Trigger -> next engaged item pairs of the same user, from TRAIN events only.

    Args:
        samples: P1 samples; only events with ``split == TRAIN`` are read.
        min_label: an event is engaged when its label >= this.
        window_steps: pair each trigger with the user's next ``window_steps`` engaged events.
        window_seconds: and only those at most this many seconds later (0 = no limit).
        max_per_user: cap per user (0 = none).
        weight: weight of every behaviour pair.
        rng: draws the capped subset.
    """
    engaged = np.flatnonzero((samples.split == TRAIN) & (samples.label >= min_label))
    user, time = samples.user[engaged], samples.timestamp[engaged]
    engaged = engaged[np.lexsort((time, user))]  # by user, then time, stable within a second
    user, time, item = samples.user[engaged], samples.timestamp[engaged], samples.item[engaged]
    parts = []
    for step in range(1, window_steps + 1):
        ok = user[:-step] == user[step:]
        if window_seconds > 0:
            ok &= time[step:] - time[:-step] <= window_seconds
        parts.append(np.flatnonzero(ok))
    first = np.concatenate(parts)
    second = first + np.repeat(np.arange(1, window_steps + 1), [len(p) for p in parts])
    order = np.lexsort((second, first))  # trigger order, nearest partner first
    first, second = first[order], second[order]
    return make_pairs(item[first], item[second], user[first], weight, max_per_user, rng)


def concat_pairs(*sources: Pairs) -> Pairs:
    """Several pair sources as one (e.g. behaviour pairs and query -> engaged-item pairs)."""
    return Pairs(*(np.concatenate([getattr(p, f) for p in sources])
                   for f in ("anchor", "positive", "user", "weight")))
