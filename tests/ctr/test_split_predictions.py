"""A large split's probabilities are written batch by batch to a memory map and scored by the
streaming metrics: the artifact and the metrics are those of the in-memory path."""

import numpy as np
import pytest

from mimrec.ctr import stage
from mimrec.ctr.config import CtrConfig, ModelConfig, TrainConfig
from mimrec.ctr.split_predictions import portable, reopened
from mimrec.ctr.stage import run_ctr
from mimrec.data.samples import TEST
from mimrec.eval.report import split_predictions


def _cfg():
    return CtrConfig(model=ModelConfig(mlp_units=(16,)), variants=("din",),
                     train=TrainConfig(max_epochs=1, seeds=(0,), threads=1))


def test_memory_mapped_predictions_equal_in_memory_ones(artifacts, tmp_path, monkeypatch):
    data_cfg, data, index = artifacts
    whole = run_ctr(_cfg(), data_cfg, data, tmp_path / "whole", index_dir=index)
    monkeypatch.setattr(stage, "STREAM_ABOVE_ROWS", 0)  # every split counts as large
    calls = []
    monkeypatch.setattr(stage, "predict_to_file",
                        lambda *a, real=stage.predict_to_file: calls.append(a[3]) or real(*a))
    streamed = run_ctr(_cfg(), data_cfg, data, tmp_path / "streamed", index_dir=index)
    assert calls == ["din-seed0.valid", "din-seed0.test"]
    with np.load(tmp_path / "whole" / "predictions.npz") as a, \
            np.load(tmp_path / "streamed" / "predictions.npz") as b:
        assert a.files == b.files
        for key in a.files:
            assert a[key].dtype == b[key].dtype == np.float32
            np.testing.assert_array_equal(a[key], b[key])
    for metric in ("auc", "gauc", "logloss"):
        assert streamed["din-seed0"]["test"][metric] == pytest.approx(
            whole["din-seed0"]["test"][metric], rel=1e-12)
    assert not list((tmp_path / "streamed").glob("*.npy*"))  # the memory-mapped files are gone
    assert not list(tmp_path.glob(".streamed*"))
    saved = split_predictions(tmp_path / "streamed", "test")["din"][0]
    assert isinstance(saved, np.memmap) and len(saved) == int((data.samples.split == TEST).sum())


def test_a_worker_sends_a_memory_map_by_its_path(tmp_path):
    np.save(tmp_path / "p.npy", np.arange(5, dtype=np.float32))
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    assert portable(mapped) == tmp_path / "p.npy"
    np.testing.assert_array_equal(reopened(portable(mapped)), mapped)
    in_memory = np.ones(3)
    assert reopened(portable(in_memory)) is in_memory
