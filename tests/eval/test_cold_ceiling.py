import numpy as np
import pytest

from mimrec.data.samples import TEST, TRAIN, Samples, bucket_of
from mimrec.eval.cold_ceiling import cold_ceiling, multi_hot


def _samples(rng, n_items=60, n_users=20, n=6000):
    """Items 0..39 are warm (train), 40..59 cold (test only); an item's click rate is set by
    its first feature, so features predict a cold item's appeal and noise does not."""
    appeal = rng.uniform(0.1, 0.9, n_items)
    item = rng.integers(0, n_items, n)
    split = np.where(item < 40, TRAIN, TEST).astype(np.int8)
    label = (rng.random(n) < appeal[item]).astype(np.float32)
    counts = np.bincount(item[split == TRAIN], minlength=n_items)
    samples = Samples(split, rng.integers(0, n_users, n), item, np.arange(n), label,
                      np.zeros(0, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int32), 3,
                      bucket_of(counts[item]), counts,
                      np.zeros(n_items, bool), np.array([str(u) for u in range(n_users)]))
    return samples, appeal


def test_features_that_carry_appeal_score_the_cold_rows_well():
    rng = np.random.default_rng(0)
    samples, appeal = _samples(rng)
    result = cold_ceiling(samples, {"appeal": np.stack([appeal, rng.random(60)], 1),
                                    "noise": rng.random((60, 2))})
    assert result["cold_rows"] == (samples.split == TEST).sum()
    assert result["appeal"] > 0.65 and result["oracle: item test rate"] > 0.65
    assert result["noise"] < result["appeal"] - 0.1
    assert abs(result["user train rate"] - 0.5) < 0.1  # users are alike here


def test_no_cold_rows_is_a_clear_error():
    rng = np.random.default_rng(0)
    samples, appeal = _samples(rng)
    samples.bucket[:] = 3
    with pytest.raises(ValueError, match="cold bucket of test has 0 rows"):
        cold_ceiling(samples, {"appeal": appeal[:, None]})


def test_multi_hot_drops_padding():
    index = np.array([[0, 0], [1, 2], [2, 0]])  # row 0 = padding row
    np.testing.assert_array_equal(multi_hot(index), [[1, 1], [0, 1]])
