"""Popularity buckets: edges from the data (train-count quantiles) unless set, never empty."""

import numpy as np
import pytest

from mimrec.data.samples import (
    FIXED_LOWS,
    TEST,
    TRAIN,
    bucket_names,
    bucket_of,
    choose_buckets,
    count_range,
    merge_empty,
    quantile_lows,
)


def test_fixed_edges_are_the_old_cold_tail_mid_head():
    counts = np.array([0, 1, 9, 10, 99, 100, 5000])
    assert bucket_of(counts).tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert bucket_names(FIXED_LOWS) == ("cold", "tail", "mid", "head")
    assert [count_range(FIXED_LOWS, i) for i in range(4)] == ["0", "1-9", "10-99", "100+"]


def test_quantile_edges_split_train_events_in_thirds():
    # every item has 40-50 train impressions: fixed edges would put all of them in "mid"
    train_counts = np.repeat(np.arange(40, 51), 30)
    lows = quantile_lows(train_counts)
    assert lows[:2] == (0, 1) and len(lows) == 4
    share = np.bincount(bucket_of(train_counts, lows), minlength=4)[1:] / len(train_counts)
    assert np.all(np.abs(share - 1 / 3) < 0.12)


def _random_log(rng, items=300, events=6000):
    popularity = rng.zipf(1.6, items).astype(float)
    item = rng.choice(items, events, p=popularity / popularity.sum())
    split = np.where(np.arange(events) < 0.8 * events, TRAIN, TEST).astype(np.int8)
    counts = np.bincount(item[split == TRAIN], minlength=items)
    return counts, item, split


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("edges", [(), (1, 10, 100), (1, 2, 3, 5000), (50,)])
def test_every_bucket_has_test_rows_and_every_row_one_bucket(seed, edges):
    counts, item, split = _random_log(np.random.default_rng(seed))
    lows, notes = choose_buckets(counts, item, split, edges)
    codes = bucket_of(counts[item], lows)
    assert list(lows) == sorted(set(lows)) and lows[0] == 0
    assert codes.min() >= 0 and codes.max() < len(lows)
    test_sizes = np.bincount(codes[split == TEST], minlength=len(lows))
    assert np.all(test_sizes > 0)
    assert len(bucket_names(lows)) == len(lows) == len(set(bucket_names(lows)))
    if edges == (1, 2, 3, 5000):  # no item reaches 5,000 train impressions
        assert any("5000+" in note for note in notes)


def test_an_empty_bucket_is_merged_with_a_note():
    lows, notes = merge_empty((0, 1, 10, 100), np.array([0, 3, 50, 60]))  # no head rows
    assert lows == (0, 1, 10)
    assert notes == ["no test rows with train count 100+: merged with 10-99"]
    assert bucket_names(lows) == ("cold", "tail", "head")
    lows, notes = merge_empty((0, 1, 10), np.array([3, 50]))  # no cold rows
    assert lows == (0, 10) and bucket_names(lows) == ("tail", "head")
    assert notes == ["no test rows with train count 0: merged with 1-9"]
