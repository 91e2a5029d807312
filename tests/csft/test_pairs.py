"""Behaviour pairs: the window, duplicates, the per-user cap, and no valid/test event ever."""

from __future__ import annotations

import numpy as np

from mimrec.csft.pairs import behaviour_pairs, concat_pairs, make_pairs
from mimrec.data.config import DataConfig
from mimrec.data.samples import TEST, TRAIN, VALID, build_samples
from mimrec.data.tables import Dataset
from tests.csft.conftest import make_samples


def _triples(p) -> list[tuple[int, int]]:
    return list(zip(p.anchor.tolist(), p.positive.tolist(), strict=True))


def _pairs(samples, steps: int = 1, seconds: int = 0, cap: int = 0):
    return behaviour_pairs(samples, 1.0, steps, seconds, cap, 1.0, np.random.default_rng(0))


def test_next_engaged_item_within_the_window_and_train_only() -> None:
    # user 0: 0+ 1+ 2- 3+ | valid 4+ | test 5+ ; user 1: 6+ (t=2) 7+ (t=9)
    samples = make_samples(
        user=[0, 1, 0, 0, 0, 1, 0, 0], item=[0, 6, 1, 2, 3, 7, 4, 5],
        timestamp=[1, 2, 2, 3, 4, 9, 10, 11], label=[1, 1, 1, 0, 1, 1, 1, 1],
        split=[TRAIN] * 6 + [VALID, TEST])
    assert _triples(_pairs(samples)) == [(0, 1), (1, 3), (6, 7)]  # by user, then time
    assert sorted(_triples(_pairs(samples, steps=2))) == [(0, 1), (0, 3), (1, 3), (6, 7)]
    assert _triples(_pairs(samples, seconds=1)) == [(0, 1)]  # 1 -> 3 is 2 s, 6 -> 7 is 7 s apart
    assert _pairs(samples).user.tolist() == [0, 0, 1]


def test_duplicates_and_self_pairs_dropped_then_capped_per_user() -> None:
    rng = np.random.default_rng(0)
    anchor = [1, 1, 2, 3] + list(range(10))
    positive = [2, 2, 2, 4] + list(range(10, 20))
    user = [0, 0, 0, 0] + [1] * 10
    p = make_pairs(np.array(anchor), np.array(positive), np.array(user), 0.5, 0, rng)
    assert _triples(p)[:2] == [(1, 2), (3, 4)] and len(p) == 12
    assert np.all(p.weight == 0.5)
    capped = make_pairs(np.array(anchor), np.array(positive), np.array(user), 0.5, 3, rng)
    assert (capped.user == 0).sum() == 2 and (capped.user == 1).sum() == 3
    again = make_pairs(np.array(anchor), np.array(positive), np.array(user), 0.5, 3,
                       np.random.default_rng(0))
    first = make_pairs(np.array(anchor), np.array(positive), np.array(user), 0.5, 3,
                       np.random.default_rng(0))
    assert _triples(again) == _triples(first)  # the cap is a seeded draw


def test_query_pairs_join_behaviour_pairs_with_their_own_weight() -> None:
    rng = np.random.default_rng(0)
    behaviour = make_pairs(np.array([0, 1]), np.array([1, 2]), np.array([0, 0]), 1.0, 0, rng)
    query = make_pairs(np.array([5]), np.array([6]), np.array([3]), 2.0, 0, rng)
    joined = concat_pairs(behaviour, query)
    assert _triples(joined) == [(0, 1), (1, 2), (5, 6)]
    assert joined.weight.tolist() == [1.0, 1.0, 2.0]


def test_no_pair_ever_uses_a_valid_or_test_event(ml100k: Dataset) -> None:
    samples = build_samples(ml100k, DataConfig())
    pairs = _pairs(samples, steps=3, cap=50)
    assert len(pairs) > 1000
    engaged = samples.label >= 1
    key = samples.user * 10_000 + samples.item  # one rating per (user, item) in MovieLens
    train_keys = set(key[(samples.split == TRAIN) & engaged].tolist())
    other_keys = set(key[samples.split != TRAIN].tolist())
    for side in (pairs.anchor, pairs.positive):
        pair_keys = set((pairs.user * 10_000 + side).tolist())
        assert pair_keys <= train_keys and not pair_keys & other_keys
    assert np.bincount(pairs.user).max() <= 50
