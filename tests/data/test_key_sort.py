"""The data stage at scale: value-sort stable order, key-range chunks, int32 / int64 rows, id
lookups, the P1-ordered path of the histories."""

import numpy as np
import pandas as pd
import pytest

import mimrec.data.events as events_module
from mimrec.data.config import DataConfig
from mimrec.data.events import INT32_MAX, encode_events, index_dtype
from mimrec.data.key_sort import key_chunks, stable_order
from mimrec.data.samples import (
    build_samples,
    compact_histories,
    event_order,
    gather_histories,
    sort_key,
)
from mimrec.data.scan import IdIndex

from .test_scan import assert_same_samples


@pytest.mark.parametrize("n", [0, 1, 2, 7, 5000])
def test_stable_order_is_lexsort_with_ties_in_input_order(n):
    rng = np.random.default_rng(n)
    keys = (rng.integers(0, 3, n),  # few values: long runs of ties
            rng.integers(-2**62, 2**62, n) // 2**59 * 2**59,  # wide and negative, tied
            rng.integers(-5, 5, n).astype(np.int32))  # primary, int32
    order = stable_order(keys)
    assert order.dtype == np.int32
    assert np.array_equal(order, np.lexsort(keys))


def test_a_key_wider_than_one_pass_takes_several_and_stays_exact():
    rng = np.random.default_rng(1)
    n = 1 << 12  # 12 bits of position leave 51 bits a pass; this key spans 62
    key = rng.integers(0, 2**62, n)
    key[1::2] = key[::2]  # duplicate values: ties must keep input order
    assert np.array_equal(stable_order((key,)), np.argsort(key, kind="stable"))
    assert np.array_equal(stable_order((np.uint8([3, 1, 3, 0]),)), [3, 1, 0, 2])


def test_stable_order_refuses_keys_it_cannot_pack():
    with pytest.raises(ValueError, match="more than an int64 holds"):
        stable_order((np.array([-(2**63), 2**63 - 1]),))
    with pytest.raises(ValueError, match="more than an int64 holds"):
        stable_order((np.array([2**63, 2**63 + 1], dtype=np.uint64),))
    with pytest.raises(ValueError, match="one length"):
        stable_order((np.arange(3), np.arange(4)))
    with pytest.raises(ValueError, match="integer arrays"):
        stable_order((np.arange(3.0),))


def test_index_dtype_is_int32_up_to_its_last_value():
    assert index_dtype(0) is np.int32 and index_dtype(INT32_MAX) is np.int32
    assert index_dtype(INT32_MAX + 1) is np.int64


def test_ml100k_samples_are_the_same_with_int64_indices(ml100k, monkeypatch):
    """Past 2**31 rows the builder keeps int64 rows and positions; the samples do not change
    (the limit is lowered here so ML-100K takes that path)."""
    cfg = DataConfig(new_item_fraction=0.2)
    narrow = build_samples(ml100k, cfg)
    monkeypatch.setattr(events_module, "INT32_MAX", 1000)
    assert index_dtype(1001) is np.int64
    wide = build_samples(ml100k, cfg)
    assert_same_samples(wide, narrow)
    for name, dtype in (("user", np.int64), ("item", np.int64), ("hist_end", np.int64),
                        ("seq_items", np.int64), ("hist_len", np.int32)):
        assert getattr(narrow, name).dtype == dtype, name  # the samples' dtypes stay as before


def test_compact_histories_do_not_depend_on_the_row_dtype():
    rng = np.random.default_rng(5)
    n = 3000
    user, time = rng.integers(0, 40, n), np.sort(rng.integers(0, 500, n))
    item, positive = rng.integers(0, 90, n), rng.random(n) < 0.4
    wide = compact_histories(user, time, item, positive, 6)
    narrow = compact_histories(user.astype(np.int32), time, item.astype(np.int32), positive, 6)
    assert narrow[1].dtype == np.int32  # positions below 2**31 events
    assert np.array_equal(gather_histories(*wide, 6), gather_histories(*narrow, 6))


@pytest.mark.parametrize("scale", [1, 1000], ids=["dense ids: lookup table", "sparse: search"])
def test_integer_ids_find_their_rows_and_unknown_ids_none(scale):
    ids = (np.random.default_rng(2).permutation(500) - 50) * scale  # negative ids too
    index = IdIndex(ids.astype(str))
    assert (index.dense is not None) == (scale == 1)
    probe = np.concatenate([ids[::-1], [ids.min() - 1, ids.max() + 1, -(2**62), 2**62]])
    expected = np.concatenate([np.arange(500)[::-1], [-1, -1, -1, -1]])
    if scale > 1:
        probe, expected = np.append(probe, ids[0] + 1), np.append(expected, -1)  # a gap
    assert np.array_equal(index.rows(probe), expected)
    small = np.abs(probe) < 2**31
    assert np.array_equal(index.rows(probe[small].astype(np.int32)), expected[small])
    assert np.array_equal(index.rows(probe.astype(str)), expected)  # the string path agrees


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("block", [7, 512, 1 << 22])
@pytest.mark.parametrize("rows", [1, 64, 1000, 10_000])
def test_key_chunks_cut_the_key_range_into_whole_ranges(rows, block, ordered):
    rng = np.random.default_rng(rows)
    key = rng.zipf(1.5, 5000) % 700 - 200  # skewed, negative, one value far more common
    if ordered:  # near key order (a log in time order): a few values out of place
        key = np.sort(key)
        key[rng.integers(0, len(key), 50)] = rng.integers(-200, 500, 50)
    chunks = list(key_chunks(key, rows, block))
    assert np.array_equal(np.sort(np.concatenate(chunks)), np.arange(len(key)))  # a partition
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert key[a].max() < key[b].min()  # ranges in key order: equal keys share a chunk
    assert all(np.all(np.diff(c) > 0) for c in chunks)  # input order within a chunk
    if rows >= len(key):
        assert len(chunks) == 1
    else:
        assert len(chunks) > 1 and max(map(len, chunks)) < len(key)


def test_the_p1_order_sorted_in_time_chunks_equals_lexsort(ml100k):
    events = encode_events(ml100k.interactions, ml100k.items, ml100k.users)
    item_ids = ml100k.items["item_id"]
    whole = event_order(events, item_ids)
    assert np.array_equal(event_order(events, item_ids, chunk_rows=997), whole)
    tie = (sort_key(pd.Series(events.user_ids))[events.user] * len(item_ids)
           + sort_key(item_ids)[events.item])
    assert np.array_equal(whole, np.lexsort((tie, events.timestamp)))


def test_histories_of_p1_ordered_events_are_the_same_by_either_path():
    """``grouped=True`` (one user's events of one time adjacent, as P1 orders them) finds the
    same pointers as the general path, with ties of time within and across users."""
    rng = np.random.default_rng(11)
    n = 4000
    user, time = rng.integers(0, 60, n), rng.integers(0, 300, n)
    order = np.lexsort((user, time))  # time, then user: P1's grouping
    user, time = user[order], time[order]
    item, positive = rng.integers(0, 80, n), rng.random(n) < 0.45
    general = compact_histories(user, time, item, positive, 5)
    grouped = compact_histories(user, time, item, positive, 5, grouped=True)
    for a, b in zip(general, grouped, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_large_sort_in_parts_equals_one_sort(monkeypatch):
    """Above the threshold the parts are sorted on threads, then merged: the same values."""
    import mimrec.data.key_sort as ks

    monkeypatch.setattr(ks, "PARALLEL_SORT_ABOVE", 1000)
    monkeypatch.setattr(ks, "data_threads", lambda: 3)
    rng = np.random.default_rng(5)
    values = rng.integers(0, 2**63, 10_001, dtype=np.uint64)
    expected = np.sort(values)
    ks.sort_values(values)
    assert np.array_equal(values, expected)
    key = rng.integers(0, 50, 5000)  # a stable pass over the threaded sort
    assert np.array_equal(ks.stable_order((key,)), np.argsort(key, kind="stable"))
