import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.ctr.train import batchable
from mimrec.data.config import DataConfig
from mimrec.data.samples import (
    TEST,
    TRAIN,
    VALID,
    Samples,
    build_samples,
    compact_histories,
    draw_new_items,
    gather_histories,
    sort_key,
)


class Dense:
    """Samples with the (N, L) history matrix gathered once, as the tests read it."""

    def __init__(self, s: Samples) -> None:
        self.s = s
        self.history = s.history_rows(np.arange(len(s.split)))

    def __getattr__(self, name):
        return getattr(self.s, name)


@pytest.fixture(scope="module")
def p1(ml100k):
    # the fixed edges of configs/movielens.toml
    return Dense(build_samples(ml100k, DataConfig(bucket_edges=(1, 10, 100))))


@pytest.fixture(scope="module")
def p1_cold(ml100k):
    return Dense(build_samples(ml100k, DataConfig(new_item_fraction=0.2)))


def histories(pool_user, pool_time, pool_item, query_user, query_time, max_len):
    """The reference: the (Q, L) history matrix as mimrec built it before histories were
    compact (binary searches over a (user, time) key; -1 padding on the left)."""
    times = np.unique(np.concatenate([pool_time, query_time]))
    stride = len(times) + 1
    pool_key = pool_user * stride + np.searchsorted(times, pool_time)
    order = np.argsort(pool_key, kind="stable")
    pool_key, pool_item = pool_key[order], pool_item[order]
    end = np.searchsorted(pool_key, query_user * stride + np.searchsorted(times, query_time), "left")
    begin = np.searchsorted(pool_key, query_user * stride, "left")
    pos = end[:, None] - np.arange(max_len, 0, -1)[None, :]
    valid = pos >= begin[:, None]
    return np.where(valid, pool_item[np.clip(pos, 0, None)] if len(pool_item) else -1, -1)


def reference_history(ds, cfg: DataConfig) -> np.ndarray:
    """The (N, L) history matrix of P1 / P1-cold as the pre-compact builder made it."""
    inter = ds.interactions
    user_ids = ds.users["user_id"]
    user = pd.Index(user_ids).get_indexer(inter["user_id"]).astype(np.int64)
    item = pd.Index(ds.items["item_id"]).get_indexer(inter["item_id"]).astype(np.int64)
    ts, label = inter["timestamp"].to_numpy(np.int64), inter["label"].to_numpy(np.float32)
    order = np.lexsort((sort_key(ds.items["item_id"])[item], sort_key(pd.Series(user_ids))[user],
                        ts))
    user, item, ts, label = user[order], item[order], ts[order], label[order]
    n = len(order)
    n_train = int(round(cfg.train_fraction * n))
    n_valid = int(round((cfg.train_fraction + cfg.valid_fraction) * n)) - n_train
    split = np.full(n, TEST, dtype=np.int8)
    split[:n_train], split[n_train:n_train + n_valid] = TRAIN, VALID
    new_item = draw_new_items(ds.items["item_id"], cfg.new_item_fraction, cfg.new_item_seed)
    pos = label > 0
    history = histories(user[pos], ts[pos], item[pos], user, ts, cfg.max_seq_len)
    if cfg.window_end < 1:
        n_end = int(round(cfg.window_end * n))
        user, item, ts, label, split, history, pos = (
            a[:n_end] for a in (user, item, ts, label, split, history, pos))
    if new_item.any():
        launched = split >= (TEST if cfg.new_item_launch == "test" else VALID)
        pool = pos & ~new_item[item]
        warm = histories(user[pool], ts[pool], item[pool], user, ts, cfg.max_seq_len)
        history = np.where(launched[:, None], history, warm)[launched | ~new_item[item]]
    return history


CONFIGS = {"P1": DataConfig(), "P1-cold v1": DataConfig(new_item_fraction=0.2),
           "P1-cold v2": DataConfig(new_item_fraction=0.2, new_item_launch="valid"),
           "P1 L=7": DataConfig(max_seq_len=7),
           "P1-cold v2, window": DataConfig(train_fraction=0.6, valid_fraction=0.1,
                                            window_end=0.8, new_item_fraction=0.2,
                                            new_item_launch="valid")}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gathered_batches_equal_the_full_history_matrix(ml100k, name):
    """Compact histories, gathered per batch, are exactly the (N, L) matrix of before."""
    cfg = CONFIGS[name]
    s = build_samples(ml100k, cfg)
    expected = reference_history(ml100k, cfg)
    assert expected.shape == (len(s.split), cfg.max_seq_len)
    assert np.array_equal(s.history_rows(np.arange(len(s.split))), expected)
    assert s.hist_len.max() == cfg.max_seq_len  # truncation is exercised
    for code in (TRAIN, VALID, TEST):  # the CTR stage's batches: model indices, 0 = padding
        data, rows = batchable(s, code), np.flatnonzero(s.split == code)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(code))
        for start in range(0, len(data), 4096):
            idx = order[start:start + 4096]
            assert torch.equal(data.history[idx], torch.as_tensor(expected[rows[idx]] + 1))


def test_compact_histories_store_each_positive_once_per_pool():
    rng = np.random.default_rng(3)
    n = 500
    user, time = rng.integers(0, 20, n), np.sort(rng.integers(0, 60, n))  # ties in time
    item, positive = rng.integers(0, 30, n), rng.random(n) < 0.5
    seq, end, length = compact_histories(user, time, item, positive, 4)
    assert len(seq) == positive.sum()
    assert np.array_equal(gather_histories(seq, end, length, 4),
                          histories(user[positive], time[positive], item[positive], user, time, 4))


def test_split_is_80_10_10_in_time_order(p1):
    assert [(p1.split == s).sum() for s in (TRAIN, VALID, TEST)] == [80000, 10000, 10000]
    assert np.all(np.diff(p1.timestamp) >= 0)
    assert p1.timestamp[p1.split == TRAIN].max() <= p1.timestamp[p1.split == VALID].min()
    assert p1.timestamp[p1.split == VALID].max() <= p1.timestamp[p1.split == TEST].min()


def test_a_rolling_window_is_p1_cut_earlier(ml100k, p1):
    w = Dense(build_samples(ml100k, DataConfig(train_fraction=0.6, valid_fraction=0.1,
                                               window_end=0.8)))
    assert [(w.split == s).sum() for s in (TRAIN, VALID, TEST)] == [60000, 10000, 10000]
    # the same first 80% of events, with the same histories; test is P1's 8th tenth of the log
    assert np.array_equal(w.item, p1.item[:80000])
    assert np.array_equal(w.history, p1.history[:80000])
    assert np.array_equal(w.item[w.split == TEST], p1.item[70000:80000])
    # buckets count train impressions of the window's own train split
    counts = np.bincount(w.item[w.split == TRAIN], minlength=len(w.item_train_count))
    assert np.array_equal(w.item_train_count, counts)


@pytest.mark.parametrize("cut", [dict(window_end=0.85), dict(window_end=0), dict(window_end=1.2)])
def test_a_window_that_leaves_no_test_is_refused(cut):
    with pytest.raises(ValueError, match="window_end"):
        DataConfig(**cut)


def test_labels_are_rating_at_least_4(ml100k, p1):
    assert p1.label.mean() == pytest.approx((ml100k.interactions["rating"] >= 4).mean())


def test_history_holds_only_earlier_positives_of_the_same_user(ml100k, p1):
    """No event's history contains a later (or same-time) event, a negative, or another user's."""
    first_pos = {}
    for u, i, t, y in zip(p1.user, p1.item, p1.timestamp, p1.label, strict=True):
        if y > 0:
            first_pos.setdefault((u, i), t)
    rng = np.random.default_rng(0)
    for n in rng.choice(len(p1.user), 3000, replace=False):
        hist = p1.history[n][p1.history[n] >= 0]
        for item in hist:
            assert first_pos[(p1.user[n], item)] < p1.timestamp[n]


def test_history_is_the_most_recent_positives_most_recent_last(ml100k, p1):
    u = p1.user[p1.split == TEST][0]
    mine = (p1.user == u)
    t_last = p1.timestamp[mine].max()
    n = np.flatnonzero(mine & (p1.timestamp == t_last))[0]
    earlier = mine & (p1.label > 0) & (p1.timestamp < t_last)
    expected = p1.item[earlier][-50:]
    hist = p1.history[n][p1.history[n] >= 0]
    assert list(hist) == list(expected)
    assert p1.history.shape[1] == 50 == p1.max_seq_len


def test_histories_truncate_and_pad_left():
    pool_user = np.array([0, 0, 0, 1])
    pool_time = np.array([1, 2, 3, 1])
    pool_item = np.array([10, 11, 12, 13])
    out = histories(pool_user, pool_time, pool_item, np.array([0, 0, 1, 1]),
                    np.array([3, 9, 1, 2]), max_len=2)
    assert out.tolist() == [[10, 11], [11, 12], [-1, -1], [-1, 13]]


def test_buckets_follow_train_counts(p1):
    counts = p1.item_train_count[p1.item]
    expected = np.select([counts == 0, counts < 10, counts < 100], [0, 1, 2], 3)
    assert np.array_equal(p1.bucket, expected)
    assert 100 < (p1.bucket[p1.split == TEST] == 0).sum() < 300  # ~1.5% cold under P1


def test_p1_cold_hides_new_items_from_train_and_valid(ml100k, p1, p1_cold):
    new = p1_cold.new_item
    assert new.sum() == round(0.2 * len(ml100k.items))
    warm = p1_cold.split != TEST
    assert not new[p1_cold.item[warm]].any()
    hist = p1_cold.history[warm]
    assert not new[hist[hist >= 0]].any()
    # test is unchanged: same events, same histories as P1
    assert np.array_equal(p1_cold.item[~warm], p1.item[p1.split == TEST])
    assert np.array_equal(p1_cold.history[~warm], p1.history[p1.split == TEST])
    cold_share = (p1_cold.bucket[~warm] == 0).mean()
    assert 0.15 < cold_share < 0.25


def test_p1_cold_v2_launches_new_items_at_the_start_of_valid(ml100k, p1, p1_cold):
    v2 = Dense(build_samples(ml100k, DataConfig(new_item_fraction=0.2, new_item_launch="valid")))
    assert np.array_equal(v2.new_item, p1_cold.new_item)  # the same draw as v1
    train = v2.split == TRAIN
    assert not v2.new_item[v2.item[train]].any()
    hist = v2.history[train]
    assert not v2.new_item[hist[hist >= 0]].any()
    # train is v1's train; valid and test are P1's events with P1's histories
    assert np.array_equal(v2.item[train], p1_cold.item[p1_cold.split == TRAIN])
    assert np.array_equal(v2.history[train], p1_cold.history[p1_cold.split == TRAIN])
    for split in (VALID, TEST):
        assert np.array_equal(v2.item[v2.split == split], p1.item[p1.split == split])
        assert np.array_equal(v2.history[v2.split == split], p1.history[p1.split == split])
        assert np.array_equal(v2.label[v2.split == split], p1.label[p1.split == split])
    # valid now holds cold rows, about a fifth as in test
    for split in (VALID, TEST):
        cold_share = (v2.bucket[v2.split == split] == 0).mean()
        assert 0.15 < cold_share < 0.3
    assert np.array_equal(v2.bucket[v2.split == TEST], p1_cold.bucket[p1_cold.split == TEST])


def test_new_items_are_drawn_as_protocol_says(ml100k, p1_cold):
    ids = np.sort(ml100k.items["item_id"].astype(int).to_numpy())
    drawn = np.random.default_rng(0).choice(ids, size=round(0.2 * len(ids)), replace=False)
    got = ml100k.items["item_id"][p1_cold.new_item].astype(int)
    assert set(got) == set(drawn)


def test_sample_builder_is_vectorised_enough(ml100k):
    """Sanity: 4x the events builds without quadratic blow-up (no timing assert, just completes)."""
    big = ml100k.interactions.copy()
    reps = [big.assign(user_id=big["user_id"] + f"_{k}") for k in range(4)]
    ds = type(ml100k)("x4", pd.concat(reps, ignore_index=True), ml100k.items, None)
    s = build_samples(ds, DataConfig())
    assert len(s.split) == 4 * len(big)
