"""The CTR sample builder of protocol P1 (and its item cold-start variants P1-cold v1 and v2).

Every event is one impression. Events are sorted by (timestamp, user_id, item_id); the behaviour
sequence of an event is the item rows of the same user's earlier *positive* events with a strictly
smaller timestamp, most recent last, truncated to ``max_seq_len``. The first ``train_fraction`` of
sorted events is train, the next ``valid_fraction`` valid, the rest test (up to ``window_end``: a
rolling time window drops the later events after histories are built). Each event's popularity
bucket is its item's train-impression count's (edges from ``data.bucket_edges`` or train-count
quantiles, see :func:`choose_buckets`). Everything is vectorised (sorts and cumulative counts), so
the cost grows as N log N in the number of events.

Histories are compact (as FuxiCTR's LongCTR keeps them): each user's positive sequence is stored
once (``seq_items``), and each event keeps a pointer past its last history item (``hist_end``) and
its history length (``hist_len``, at most ``max_seq_len``). :meth:`Samples.history_rows` gathers
the (rows, L) matrix of any rows on demand, so memory grows with the events, not with events x L.

P1-cold draws new items and drops their events (and removes them from histories) before they
launch: before test (v1, ``new_item_launch = "test"``) or before valid (v2, ``"valid"``). Events
after the launch are P1's, with P1's histories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from mimrec.data.config import DataConfig
from mimrec.data.events import Events, encode_events, index_dtype
from mimrec.data.key_sort import key_chunks, stable_order
from mimrec.data.tables import Dataset
from mimrec.runtime import run_threaded

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = {"train": TRAIN, "valid": VALID, "test": TEST}
BUCKETS = ("cold", "tail", "mid", "head")  # the names of the fixed buckets below
FIXED_LOWS = (0, 1, 10, 100)  # cold = 0, tail = 1-9, mid = 10-99, head >= 100 train impressions
CHUNK_ROWS = 1 << 21  # events the P1 sort takes at a time (cache-sized work)


@dataclass
class Samples:
    """CTR samples in catalogue index space (``item`` and ``seq_items`` are rows of the items
    table).

    Shapes: N samples, L = max_seq_len, I catalogue items, P stored sequence entries.
    """

    split: np.ndarray  # (N,) int8: TRAIN / VALID / TEST
    user: np.ndarray  # (N,) int64 row in ``user_ids``
    item: np.ndarray  # (N,) int64 row in the items table
    timestamp: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) float32 0/1
    seq_items: np.ndarray  # (P,) int64 item rows: the users' positive sequences, one after another
    hist_end: np.ndarray  # (N,) int64 index into seq_items one past the event's last history item
    hist_len: np.ndarray  # (N,) int32 history length, at most max_seq_len
    max_seq_len: int
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
        self.max_seq_len = int(self.max_seq_len)
        if len(self.click_probability) != len(self.split):  # artifacts written before the field
            self.click_probability = np.full(len(self.split), np.nan, dtype=np.float32)

    @property
    def buckets(self) -> tuple[str, ...]:
        """The popularity buckets' names, in code order (``bucket`` indexes them)."""
        return tuple(str(n) for n in self.bucket_names)

    def subset(self, split: int) -> dict[str, np.ndarray]:
        """Per-sample arrays of one split (histories stay compact: ``hist_end``, ``hist_len``)."""
        m = self.split == split
        return {k: getattr(self, k)[m] for k in ("user", "item", "timestamp", "label", "hist_end",
                                                   "hist_len", "bucket", "click_probability")}

    def history_rows(self, rows: np.ndarray) -> np.ndarray:
        """The (len(rows), L) history matrix of these sample rows: item rows, -1 padding on the
        left, most recent last."""
        return gather_histories(self.seq_items, self.hist_end[rows], self.hist_len[rows],
                                self.max_seq_len)



def gather_histories(seq_items: np.ndarray, end: np.ndarray, length: np.ndarray,
                     max_len: int) -> np.ndarray:
    """(R, max_len) histories from compact pointers: ``seq_items[end - length : end]`` right
    aligned, -1 padding on the left."""
    pos = end[:, None] - np.arange(max_len, 0, -1)[None, :]  # (R, L)
    valid = np.arange(max_len)[None, :] >= (max_len - length)[:, None]
    if not len(seq_items):
        return np.full(pos.shape, -1, dtype=np.int64)
    return np.where(valid, seq_items[np.clip(pos, 0, None)], -1)


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


def _group_starts(user_sorted_time: Callable[[int, int], np.ndarray], first_of_user: np.ndarray,
                  chunk: int = 1 << 22) -> np.ndarray:
    """For events sorted by user then time: the index of the first event of each event's (user,
    time) group, in ``index_dtype(n)``. ``user_sorted_time(a, b)`` gives the times of sorted
    positions a..b-1; they are read in chunks, so no second full-length time array is made."""
    new = first_of_user.copy()
    n = len(new)
    for a in range(1, n, chunk):
        t = user_sorted_time(a - 1, min(a + chunk, n))
        new[a:a + len(t) - 1] |= t[1:] != t[:-1]
    starts = np.arange(n, dtype=index_dtype(n))
    np.logical_not(new, out=new)
    starts[new] = 0
    return np.maximum.accumulate(starts, out=starts)


def compact_histories(user: np.ndarray, time: np.ndarray, item: np.ndarray,
                      in_pool: np.ndarray, max_len: int, grouped: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every event's history: the pool events (``in_pool``) of its user with a smaller time.

    Events must be in global event order; ``grouped`` says that events of one user and one time
    are also adjacent (P1 order: time, then user), which lets the pointers be found in event
    order without reading the times in user order (one random pass fewer: 53-76 s against 100 s
    at 100M events on a loaded machine). Returns
    ``(seq_items, end, length)``: the pool's items by user, then time, then event order (P,) in
    ``item``'s dtype; per event the index one past its last history item (N,) and its history
    length, truncated to ``max_len`` (N,) int32. Positions are in ``index_dtype(N)`` (int32
    below 2**31 events), so the temporaries are a few 4-byte arrays of N (no (N, L) matrix, no
    copy of the log).
    """
    n = len(user)
    by_user = stable_order((user,))  # by user, then time, then global order
    counts = np.bincount(user) if n else np.zeros(0, np.int64)
    pool = in_pool[by_user]
    before = np.cumsum(pool, dtype=index_dtype(n))
    before -= pool  # pool entries before each sorted event
    user_start = np.cumsum(counts) - counts  # (U,) first sorted position of each user
    if grouped:
        end, length = _pointers_in_event_order(user, time, by_user, before, user_start, max_len)
    else:
        end, length = _pointers_in_user_order(time, by_user, before, user_start, counts,
                                               max_len)
    return item[by_user[pool]], end, length


def _pointers_in_user_order(time: np.ndarray, by_user: np.ndarray, before: np.ndarray,
                            user_start: np.ndarray, counts: np.ndarray, max_len: int
                            ) -> tuple[np.ndarray, np.ndarray]:
    """``end`` and ``length`` of :func:`compact_histories` for any event order: (user, time)
    groups found in user order (times read through ``by_user``), then scattered back."""
    n = len(by_user)
    block, counts = user_start[counts > 0], counts[counts > 0]
    first_of_user = np.zeros(n, dtype=bool)
    first_of_user[block] = True
    end_sorted = _group_starts(lambda a, b: time[by_user[a:b]], first_of_user)
    del first_of_user
    np.take(before, end_sorted, out=end_sorted)  # pool entries before its (user, time) group
    length_sorted = np.repeat(before[block], counts)  # pool entries before the user's first
    np.subtract(end_sorted, length_sorted, out=length_sorted)
    np.minimum(length_sorted, max_len, out=length_sorted)
    end = np.empty(n, dtype=end_sorted.dtype)
    end[by_user] = end_sorted
    del end_sorted
    length = np.empty(n, dtype=np.int32)
    length[by_user] = length_sorted
    return end, length


def _pointers_in_event_order(user: np.ndarray, time: np.ndarray, by_user: np.ndarray,
                             before: np.ndarray, user_start: np.ndarray, max_len: int
                             ) -> tuple[np.ndarray, np.ndarray]:
    """``end`` and ``length`` of :func:`compact_histories` when one user's events of one time
    are adjacent: ``before`` goes back to event order (one scatter), and each event takes the
    value of the first event of its run of equal (time, user), a forward pass."""
    n = len(by_user)
    first_before = before[np.minimum(user_start, max(n - 1, 0))]  # (U,) before each user's first
    in_events = np.empty(n, dtype=before.dtype)
    in_events[by_user] = before
    run_start = np.ones(n, dtype=bool)
    for a in range(1, n, 1 << 22):  # a new run where the time or the user changes
        b = min(a + (1 << 22), n)
        run_start[a:b] = (time[a:b] != time[a - 1:b - 1]) | (user[a:b] != user[a - 1:b - 1])
    first = np.arange(n, dtype=before.dtype)
    np.logical_not(run_start, out=run_start)
    first[run_start] = 0
    np.maximum.accumulate(first, out=first)  # (N,) first event of each event's run
    end = in_events[first]  # pool entries before its (user, time) group
    del in_events, first
    length = end - first_before[user]
    np.minimum(length, max_len, out=length)
    return end, length.astype(np.int32, copy=False)


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
    empty, from the train-count quantiles of the train events; empty test buckets merged.
    ``counts`` are the train events per item (``bincount`` of the train rows' items)."""
    lows = (0, *edges) if edges else quantile_lows(train_event_counts(counts))
    return merge_empty(lows, counts[item[split == TEST]])


def train_event_counts(counts: np.ndarray) -> np.ndarray:
    """Each train event's item train count, in item order (what ``counts[item[train]]`` holds,
    in another order) from the per-item counts alone, in the narrowest integer type: item k
    appears ``counts[k]`` times with value ``counts[k]``."""
    narrow = counts.astype(index_dtype(int(counts.max(initial=0))))
    return np.repeat(narrow, counts)


def split_counts(item: np.ndarray, split: np.ndarray, code: int, n_items: int,
                 chunk: int = 1 << 22) -> np.ndarray:
    """Events per item in one split, counted a chunk at a time (no copy of the split's rows)."""
    counts = np.zeros(n_items, dtype=np.int64)
    for a in range(0, len(item), chunk):
        counts += np.bincount(item[a:a + chunk][split[a:a + chunk] == code], minlength=n_items)
    return counts


def build_samples(ds: Dataset, cfg: DataConfig) -> Samples:
    """Build P1 (or P1-cold v1 / v2 when ``cfg.new_item_fraction > 0``) samples from a dataset."""
    events = ds.events if ds.events is not None else encode_events(ds.interactions, ds.items,
                                                                   ds.users)
    return samples_from_events(events, ds.items["item_id"], cfg)


def event_order(events: Events, item_ids: pd.Series, chunk_rows: int = CHUNK_ROWS
                ) -> np.ndarray:
    """The P1 event order: by timestamp, then user id, then item id (ids compared as numbers
    when they all are), then input order; (N,) positions in ``index_dtype(N)``. Sorted a
    timestamp range at a time (about ``chunk_rows`` events each, ranges in time order, several
    at once on threads): the same order for any ``chunk_rows``, made in cache-sized pieces."""
    item_rank = sort_key(item_ids)
    user_rank = sort_key(pd.Series(events.user_ids))
    order = np.empty(len(events), dtype=index_dtype(len(events)))

    def sort_chunk(rows: np.ndarray, at: int) -> None:
        tie = user_rank[events.user[rows]]
        tie *= len(item_rank)
        tie += item_rank[events.item[rows]]  # one int64 key: user rank, then item rank
        order[at:at + len(rows)] = rows[stable_order((tie, events.timestamp[rows]))]

    def jobs() -> Iterator[Callable[[], None]]:
        at = 0
        for rows in key_chunks(events.timestamp, chunk_rows):
            yield partial(sort_chunk, rows, at)
            at += len(rows)

    run_threaded(jobs())  # the chunks' sorts and gathers release the GIL
    return order


def samples_from_events(events: Events, item_ids: pd.Series, cfg: DataConfig) -> Samples:
    """P1 / P1-cold samples of encoded events; ``item_ids`` is the items table's id column.
    ``events`` are put in P1 order in place (no second copy of the log's arrays)."""
    events.reorder(event_order(events, item_ids))
    user, item, ts, label, prob = (events.user, events.item, events.timestamp, events.label,
                                   events.click_probability)
    n = len(user)
    n_train = int(round(cfg.train_fraction * n))
    n_valid = int(round((cfg.train_fraction + cfg.valid_fraction) * n)) - n_train
    split = np.full(n, TEST, dtype=np.int8)
    split[:n_train], split[n_train:n_train + n_valid] = TRAIN, VALID

    new_item = draw_new_items(item_ids, cfg.new_item_fraction, cfg.new_item_seed)
    seq, end, length = compact_histories(user, ts, item, label > 0, cfg.max_seq_len,
                                         grouped=True)
    events.widen_rows()  # the samples' int64 rows; each narrow array is freed as it is replaced
    user, item = events.user, events.item
    if cfg.window_end < 1:  # a rolling window: later events are not part of this protocol at all
        n_end = int(round(cfg.window_end * n))
        user, item, ts, label, prob, split, end, length = (
            a[:n_end] for a in (user, item, ts, label, prob, split, end, length))
    if new_item.any():
        launched = split >= (TEST if cfg.new_item_launch == "test" else VALID)  # P1 events as is
        keep = launched | ~new_item[item]
        warm_seq, warm_end, warm_len = compact_histories(
            user, ts, item, (label > 0) & ~new_item[item], cfg.max_seq_len, grouped=True)
        # warm sequences stored after P1's (int64: the two may pass 2**31 entries together)
        end = np.where(launched, end, warm_end.astype(np.int64) + len(seq))
        length = np.where(launched, length, warm_len)
        seq = np.concatenate([seq, warm_seq])
        user, item, ts, label, prob, split, end, length = (
            a[keep] for a in (user, item, ts, label, prob, split, end, length))

    counts = split_counts(item, split, TRAIN, len(item_ids))
    lows, notes = choose_buckets(counts, item, split, cfg.bucket_edges)
    end, seq = end.astype(np.int64, copy=False), seq.astype(np.int64, copy=False)
    return Samples(split, user, item, ts, label, seq, end, length, cfg.max_seq_len,
                   bucket_of(counts, lows)[item], counts, new_item, events.user_ids, prob,
                   np.asarray(lows, np.int64), np.asarray(bucket_names(lows)),
                   np.asarray(notes, dtype=str))
