"""The CTR sample builder of protocol P1 (and its item cold-start variants P1-cold v1 and v2).

Every event is one impression. Events are sorted by (timestamp, user_id, item_id); the behaviour
sequence of an event is the item rows of the same user's earlier *positive* events with a strictly
smaller timestamp, most recent last, truncated to ``max_seq_len``. The first ``train_fraction`` of
sorted events is train, the next ``valid_fraction`` valid, the rest test (up to ``window_end``: a
rolling time window drops the later events after histories are built). Each event's popularity
bucket is its item's train-impression count's (edges from ``data.bucket_edges`` or train-count
quantiles, see :func:`choose_buckets`). Everything is vectorised
(sorts and binary searches), so the cost grows as N log N in the number of events.

P1-cold draws new items and drops their events (and removes them from histories) before they
launch: before test (v1, ``new_item_launch = "test"``) or before valid (v2, ``"valid"``). Events
after the launch are P1's, with P1's histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mimrec.data.config import DataConfig
from mimrec.data.tables import Dataset

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = {"train": TRAIN, "valid": VALID, "test": TEST}
BUCKETS = ("cold", "tail", "mid", "head")  # the names of the fixed buckets below
FIXED_LOWS = (0, 1, 10, 100)  # cold = 0, tail = 1-9, mid = 10-99, head >= 100 train impressions


@dataclass
class Samples:
    """CTR samples in catalogue index space (``item`` and ``history`` are rows of the items table).

    Shapes: N samples, L = max_seq_len, I catalogue items.
    """

    split: np.ndarray  # (N,) int8: TRAIN / VALID / TEST
    user: np.ndarray  # (N,) int64 row in ``user_ids``
    item: np.ndarray  # (N,) int64 row in the items table
    timestamp: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) float32 0/1
    history: np.ndarray  # (N, L) int64 item rows, -1 = padding (left), most recent last
    bucket: np.ndarray  # (N,) int8 index into bucket_names
    item_train_count: np.ndarray  # (I,) int64 train impressions per item
    new_item: np.ndarray  # (I,) bool: launched late under P1-cold
    user_ids: np.ndarray  # (U,) str
    # (N,) float32 true click probability (simulations such as P4), NaN where unknown
    click_probability: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    # (K,) int64 lowest train count of each popularity bucket (the first is 0), and its name
    bucket_lows: np.ndarray = field(default_factory=lambda: np.asarray(FIXED_LOWS))
    bucket_names: np.ndarray = field(default_factory=lambda: np.asarray(BUCKETS))
    bucket_notes: np.ndarray = field(default_factory=lambda: np.asarray([], dtype=str))  # merges

    def __post_init__(self) -> None:
        if len(self.click_probability) != len(self.split):  # artifacts written before the field
            self.click_probability = np.full(len(self.split), np.nan, dtype=np.float32)

    @property
    def buckets(self) -> tuple[str, ...]:
        """The popularity buckets' names, in code order (``bucket`` indexes them)."""
        return tuple(str(n) for n in self.bucket_names)

    def subset(self, split: int) -> dict[str, np.ndarray]:
        """Per-sample arrays of one split."""
        m = self.split == split
        return {k: getattr(self, k)[m] for k in ("user", "item", "timestamp", "label",
                                                   "history", "bucket", "click_probability")}

    def save(self, path) -> None:
        """Write every array to one ``.npz`` (no pickled objects)."""
        np.savez(path, **{k: np.asarray(v) for k, v in self.__dict__.items()})

    @classmethod
    def load(cls, path) -> Samples:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in z.files})


def sort_key(ids: pd.Series) -> np.ndarray:
    """An int64 rank of ids that orders numeric ids as numbers and others as strings."""
    numeric = pd.to_numeric(ids, errors="coerce")
    if not numeric.isna().any():
        values = numeric.to_numpy()
    else:
        values = ids.to_numpy(dtype=str)
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


def draw_new_items(item_ids: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over catalogue rows of the items launched late (protocol P1-cold)."""
    mask = np.zeros(len(item_ids), dtype=bool)
    if fraction <= 0:
        return mask
    order = np.argsort(sort_key(item_ids), kind="stable")
    rows = np.random.default_rng(seed).choice(order, size=round(fraction * len(order)), replace=False)
    mask[rows] = True
    return mask


def histories(
    pool_user: np.ndarray, pool_time: np.ndarray, pool_item: np.ndarray,
    query_user: np.ndarray, query_time: np.ndarray, max_len: int,
) -> np.ndarray:
    """For each query (user, time): the pool items of that user with time < query time.

    The pool must already be in global event order. Returns (Q, max_len) item rows, -1 padded on
    the left, most recent last.
    """
    times = np.unique(np.concatenate([pool_time, query_time]))
    stride = len(times) + 1
    pool_key = pool_user * stride + np.searchsorted(times, pool_time)
    order = np.argsort(pool_key, kind="stable")  # by user, then time, then global order
    pool_key, pool_item = pool_key[order], pool_item[order]
    end = np.searchsorted(pool_key, query_user * stride + np.searchsorted(times, query_time), "left")
    begin = np.searchsorted(pool_key, query_user * stride, "left")
    pos = end[:, None] - np.arange(max_len, 0, -1)[None, :]  # (Q, L)
    valid = pos >= begin[:, None]
    return np.where(valid, pool_item[np.clip(pos, 0, None)] if len(pool_item) else -1, -1)


def bucket_of(counts: np.ndarray, lows: tuple[int, ...] | np.ndarray = FIXED_LOWS) -> np.ndarray:
    """Popularity bucket index of train-impression counts: bucket i holds ``[lows[i],
    lows[i + 1])`` (by default cold / tail / mid / head at 1 / 10 / 100)."""
    return np.searchsorted(np.asarray(lows)[1:], counts, side="right").astype(np.int8)


def count_range(lows: tuple[int, ...], i: int) -> str:
    """Train counts of bucket ``i`` as text: ``0``, ``1-9``, ``100+``."""
    low = lows[i]
    if i + 1 == len(lows):
        return f"{low}+"
    high = lows[i + 1] - 1
    return str(low) if high == low else f"{low}-{high}"


def bucket_names(lows: tuple[int, ...]) -> tuple[str, ...]:
    """cold (train count 0, when alone) then tail / mid / head, or ranges beyond three."""
    cold = len(lows) > 1 and lows[1] == 1
    warm = len(lows) - cold
    named = {1: ("all",), 2: ("tail", "head"), 3: ("tail", "mid", "head")}
    names = named.get(warm) or tuple(count_range(lows, i) for i in range(cold, len(lows)))
    return ("cold",) * cold + names


def quantile_lows(train_counts: np.ndarray) -> tuple[int, ...]:
    """Bucket lows from the data: 0 (cold), 1, and the train counts that split the train events
    in thirds by their item's train count (equal ones merged)."""
    if not len(train_counts):
        return (0, 1)
    thirds = np.ceil(np.quantile(train_counts, [1 / 3, 2 / 3])).astype(int)
    return (0, *sorted({1, *(int(t) for t in thirds if t > 1)}))


def merge_empty(lows: tuple[int, ...], test_counts: np.ndarray) -> tuple[tuple[int, ...], list[str]]:
    """Merge each bucket without test rows into its neighbour (the one below, or above for the
    first); returns the lows and one note per merge."""
    lows, notes = tuple(lows), []
    while len(lows) > 1:
        sizes = np.bincount(bucket_of(test_counts, lows), minlength=len(lows))
        empty = np.flatnonzero(sizes == 0)
        if not len(empty):
            break
        i = int(empty[0])
        gone = 1 if i == 0 else i  # the edge removed: bucket i joins i+1 (first) or i-1
        notes.append(f"no test rows with train count {count_range(lows, i)}: merged with "
                     f"{count_range(lows, 1 if i == 0 else i - 1)}")
        lows = lows[:gone] + lows[gone + 1:]
    return lows, notes


def choose_buckets(counts: np.ndarray, item: np.ndarray, split: np.ndarray,
                   edges: tuple[int, ...]) -> tuple[tuple[int, ...], list[str]]:
    """The report's popularity buckets: lows from ``edges`` (``data.bucket_edges``) or, when
    empty, from the train-count quantiles of the train events; empty test buckets merged."""
    lows = (0, *edges) if edges else quantile_lows(counts[item[split == TRAIN]])
    return merge_empty(lows, counts[item[split == TEST]])


def build_samples(ds: Dataset, cfg: DataConfig) -> Samples:
    """Build P1 (or P1-cold v1 / v2 when ``cfg.new_item_fraction > 0``) samples from a dataset."""
    inter = ds.interactions
    user_ids = ds.users["user_id"] if ds.users is not None else pd.Series(
        np.unique(inter["user_id"].to_numpy(dtype=str)))
    user = pd.Index(user_ids).get_indexer(inter["user_id"]).astype(np.int64)
    item = pd.Index(ds.items["item_id"]).get_indexer(inter["item_id"]).astype(np.int64)
    ts = inter["timestamp"].to_numpy(np.int64)
    label = inter["label"].to_numpy(np.float32)
    prob = (inter["click_probability"].to_numpy(np.float32) if "click_probability" in inter
            else np.full(len(inter), np.nan, dtype=np.float32))

    user_rank = sort_key(pd.Series(user_ids))[user]
    item_rank = sort_key(ds.items["item_id"])[item]
    order = np.lexsort((item_rank, user_rank, ts))
    user, item, ts, label, prob = user[order], item[order], ts[order], label[order], prob[order]

    n = len(order)
    n_train = int(round(cfg.train_fraction * n))
    n_valid = int(round((cfg.train_fraction + cfg.valid_fraction) * n)) - n_train
    split = np.full(n, TEST, dtype=np.int8)
    split[:n_train], split[n_train:n_train + n_valid] = TRAIN, VALID

    new_item = draw_new_items(ds.items["item_id"], cfg.new_item_fraction, cfg.new_item_seed)
    positive = label > 0
    history = histories(user[positive], ts[positive], item[positive], user, ts, cfg.max_seq_len)
    if cfg.window_end < 1:  # a rolling window: later events are not part of this protocol at all
        n_end = int(round(cfg.window_end * n))
        user, item, ts, label, prob, split, history, positive = (
            a[:n_end] for a in (user, item, ts, label, prob, split, history, positive))
    if new_item.any():
        launched = split >= (TEST if cfg.new_item_launch == "test" else VALID)  # P1 events as is
        keep = launched | ~new_item[item]
        pool = positive & ~new_item[item]
        warm_hist = histories(user[pool], ts[pool], item[pool], user, ts, cfg.max_seq_len)
        history = np.where(launched[:, None], history, warm_hist)
        user, item, ts, label, prob, split, history = (
            a[keep] for a in (user, item, ts, label, prob, split, history))

    counts = np.bincount(item[split == TRAIN], minlength=len(ds.items))
    lows, notes = choose_buckets(counts, item, split, cfg.bucket_edges)
    return Samples(split, user, item, ts, label, history, bucket_of(counts[item], lows), counts,
                   new_item, np.asarray(user_ids, dtype=str), prob, np.asarray(lows, np.int64),
                   np.asarray(bucket_names(lows)), np.asarray(notes, dtype=str))
