"""Protocol P2, content-interest retrieval: does an embedding put what a user engages next near
what the user engaged last?

For every positive event of a split whose user has a non-empty behaviour sequence: the query is
the user's most recent positive item before the event (the last history entry), the target is the
event's item. The whole catalogue, the query excluded, is ranked by cosine similarity to the
query. Events whose target is the query item itself are left out (the query is never a
candidate). Ties count against the target (a candidate scoring equal to it ranks above it), so a
constant embedding scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mimrec.data.samples import VALID, Samples


def p2_queries(samples: Samples, split: int = VALID) -> tuple[np.ndarray, np.ndarray]:
    """Query and target catalogue rows of the P2 events of ``split``. Shapes: (Q,), (Q,)."""
    events = np.flatnonzero((samples.split == split) & (samples.label > 0))
    query = samples.history_rows(events)[:, -1]  # most recent positive before the event; -1 = none
    target = samples.item[events]
    keep = (query >= 0) & (query != target)
    return query[keep].astype(np.int64), target[keep].astype(np.int64)


def target_ranks(vectors: np.ndarray, query: np.ndarray, target: np.ndarray,
                 chunk: int = 1024) -> np.ndarray:
    """0-based rank of each target among all catalogue items but the query, by cosine.

    Shapes: vectors (I, D), query, target (Q,) -> (Q,) int64.
    """
    v = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=-1)
    ranks = []
    for start in range(0, len(query), chunk):
        q = torch.as_tensor(query[start : start + chunk])
        t = torch.as_tensor(target[start : start + chunk])
        rows = torch.arange(len(q))
        scores = v[q] @ v.T  # (C, I)
        scores[rows, q] = float("-inf")  # the query is never a candidate
        own = scores[rows, t].unsqueeze(1)  # (C, 1)
        ranks.append((scores >= own).sum(1) - 1)  # others at least as close as the target
    return torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)


def p2_metrics(vectors: np.ndarray, samples: Samples, split: int = VALID,
               ks: Sequence[int] = (10, 50)) -> dict[str, float]:
    """Recall@k and MRR of protocol P2 for one set of item vectors.

    Args:
        vectors: one vector per catalogue row (any scale; cosine is used).
        samples: P1 samples (catalogue index space).
        split: the split whose events are the queries (VALID while tuning).
        ks: cut-offs of Recall@k.

    Shapes: vectors (I, D).

    Returns:
        ``{"recall@10": ..., "recall@50": ..., "mrr": ...}`` (NaN when there is no query).
    """
    query, target = p2_queries(samples, split)
    ranks = target_ranks(vectors, query, target)
    if len(ranks) == 0:
        return {**{f"recall@{k}": float("nan") for k in ks}, "mrr": float("nan")}
    out = {f"recall@{k}": float((ranks < k).mean()) for k in ks}
    out["mrr"] = float((1.0 / (ranks + 1)).mean())
    return out
