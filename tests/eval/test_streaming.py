"""Streaming metrics equal the in-memory ones and keep memory to a multiple of the chunk."""

import tracemalloc

import numpy as np
import pytest

from mimrec.eval.config import EvalConfig
from mimrec.eval.metrics import auc, ctr_metrics
from mimrec.eval.npz_members import npz_memmaps
from mimrec.eval.report import split_report
from mimrec.eval.significance import bootstrap_rows
from mimrec.eval.streaming import split_auc, split_metrics, stream_auc, stream_ctr_metrics


def _split(n, users, seed, decimals=2):
    """Random rows with many ties (scores rounded), many users and four buckets."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n).astype(np.float32)
    prob = np.round(rng.random(n) * 0.7 + 0.3 * label, decimals).astype(np.float32)
    return {"user": rng.integers(0, users, n), "label": label,
            "bucket": rng.integers(0, 4, n).astype(np.int8), "prob": prob}


def _assert_same(streamed, in_memory):
    for key in ("auc", "gauc", "logloss"):
        assert streamed[key] == pytest.approx(in_memory[key], rel=1e-12, abs=1e-12), key
    assert list(streamed["buckets"]) == list(in_memory["buckets"])
    for name, b in in_memory["buckets"].items():
        assert streamed["buckets"][name]["n"] == b["n"]
        assert streamed["buckets"][name]["auc"] == pytest.approx(b["auc"], rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [1, 7, 1000, 4999, 5000, 10**6])
def test_streaming_equals_in_memory_with_ties_and_many_users(seed, chunk):
    n = 5000 if chunk >= 1000 else 400  # tiny chunks make many passes: a shorter split
    s = _split(n, users=n // 10, seed=seed)
    expected = ctr_metrics(s["user"], s["label"], s["prob"], s["bucket"])
    _assert_same(stream_ctr_metrics(s["user"], s["label"], s["prob"], s["bucket"],
                                    chunk_rows=chunk), expected)


def test_streaming_reads_memory_maps_and_handles_degenerate_scores(tmp_path):
    s = _split(20_000, users=3000, seed=2, decimals=1)  # 11 distinct scores: heavy ties
    s["bucket"][s["bucket"] == 3] = 2  # an empty bucket: NaN AUC, 0 rows
    maps = {}
    for key, values in s.items():
        np.save(tmp_path / f"{key}.npy", values)
        maps[key] = np.load(tmp_path / f"{key}.npy", mmap_mode="r")
    expected = ctr_metrics(s["user"], s["label"], s["prob"], s["bucket"])
    assert np.isnan(expected["buckets"]["head"]["auc"])
    for chunk in (333, 4096):
        _assert_same(stream_ctr_metrics(maps["user"], maps["label"], maps["prob"], maps["bucket"],
                                        chunk_rows=chunk), expected)
    # one score for every row: every pair a tie; one class only: NaN
    assert stream_auc(s["label"], np.full(len(s["label"]), 0.3), chunk_rows=999)[0] == 0.5
    assert np.isnan(stream_auc(np.ones(10), np.arange(10.0), chunk_rows=3)[0])
    with pytest.raises(ValueError, match="1 of the rows are not"):
        stream_auc(np.r_[0, 1, 0], np.r_[0.1, np.nan, 0.3], chunk_rows=2)


def test_split_metrics_keeps_small_splits_in_memory_to_the_last_digit():
    s = _split(3000, users=200, seed=3)
    args = (s["user"], s["label"], s["prob"], s["bucket"])
    assert split_metrics(*args) == ctr_metrics(*args)  # below the threshold: the same code
    _assert_same(split_metrics(*args, stream_above=0, chunk_rows=500), ctr_metrics(*args))


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_follows_the_chunk_not_the_split(tmp_path):
    """2M rows memory-mapped, read 50,000 at a time: the peak is a few hundred bytes a chunk row
    and the same for a split 4 times smaller; in memory it is hundreds of bytes a split row."""
    chunk, peaks = 50_000, {}
    for n in (500_000, 2_000_000):
        s = _split(n, users=n // 20, seed=4, decimals=6)
        maps = {}
        for key, values in s.items():
            np.save(tmp_path / f"{key}-{n}.npy", values)
            maps[key] = np.load(tmp_path / f"{key}-{n}.npy", mmap_mode="r")
        del s
        peaks[n] = _peak(lambda maps=maps: stream_ctr_metrics(
            maps["user"], maps["label"], maps["prob"], maps["bucket"], chunk_rows=chunk))
    in_memory = _peak(lambda: ctr_metrics(*(np.asarray(maps[k])
                                            for k in ("user", "label", "prob", "bucket"))))
    assert peaks[2_000_000] < 600 * chunk  # bytes: ~60 MB for 2M rows in chunks of 50,000
    assert peaks[2_000_000] < 1.5 * peaks[500_000]  # does not grow with the split
    assert in_memory > 50 * 2_000_000 > 3 * peaks[2_000_000]


def test_npz_members_are_memory_maps_of_the_saved_arrays(tmp_path):
    arrays = {"din-seed0/test": np.random.default_rng(0).random(1000).astype(np.float32),
              "din-seed0/valid": np.arange(7.0), "empty": np.zeros(0, np.float32),
              "grid": np.arange(12).reshape(3, 4)}
    np.savez(tmp_path / "p.npz", **arrays)
    maps = npz_memmaps(tmp_path / "p.npz")
    assert isinstance(maps["din-seed0/test"], np.memmap)
    np.savez_compressed(tmp_path / "c.npz", **arrays)  # compressed: read into memory
    for read in (maps, npz_memmaps(tmp_path / "c.npz")):
        assert set(read) == set(arrays)
        for key, value in arrays.items():
            assert read[key].dtype == value.dtype
            np.testing.assert_array_equal(read[key], value)
    np.savez(tmp_path / "o.npz", bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="object array"):
        npz_memmaps(tmp_path / "o.npz")


def test_the_bootstrap_sample_takes_whole_users_up_to_the_row_budget():
    users = np.random.default_rng(5).integers(0, 500, 20_000)
    rows = bootstrap_rows(users, 5000, chunk_rows=3000)
    assert 4500 < len(rows) <= 5000 and np.all(np.diff(rows) > 0)
    chosen = np.unique(users[rows])
    assert np.isin(users, chosen).sum() == len(rows)  # every row of a chosen user
    np.testing.assert_array_equal(rows, bootstrap_rows(users, 5000))  # seeded


def test_a_large_split_report_streams_and_bootstraps_a_user_sample():
    s = _split(6000, users=300, seed=6)
    rows = {k: s[k] for k in ("user", "label", "bucket")}
    rows["click_probability"] = np.full(6000, np.nan)
    rng = np.random.default_rng(0)
    predictions = {"din": {0: s["prob"] + rng.normal(0, 0.3, 6000)},
                   "ciubm": {0: s["prob"] + rng.normal(0, 0.1, 6000)}}
    whole = split_report(EvalConfig(bootstrap_resamples=20), rows, predictions)
    large = split_report(EvalConfig(bootstrap_resamples=20, stream_above_rows=1000,
                                    chunk_rows=700, bootstrap_rows=3000), rows, predictions)
    for name in predictions:
        _assert_same(large["models"][name], whole["models"][name])
    vs = large["models"]["ciubm"]["vs_baseline"]
    assert vs["n"] == 6000 and vs["users"] == whole["models"]["ciubm"]["vs_baseline"]["users"]
    assert vs["sample"]["rows"] <= 3000 and vs["sample"]["users"] < vs["users"]
    assert "sample" not in whole["models"]["ciubm"]["vs_baseline"]


def test_the_valid_auc_of_early_stopping_streams_above_the_threshold():
    s = _split(4000, users=100, seed=7)
    exact = split_auc(s["label"], s["prob"])
    assert exact == auc(s["label"], s["prob"])  # in memory: the same code as before
    assert split_auc(s["label"], s["prob"], stream_above=0, chunk_rows=300) == pytest.approx(
        exact, rel=1e-12)
