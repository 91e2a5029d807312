"""The CTR stage trains the same models whether one after another or in worker processes."""

import json

import numpy as np
import pytest

from mimrec.artifacts import write_manifest
from mimrec.ctr.config import CtrConfig, ModelConfig, TrainConfig
from mimrec.ctr.stage import run_ctr
from mimrec.data.config import DataConfig
from mimrec.data.stage import run_data
from mimrec.store.center import StoreInfo, write_version


@pytest.fixture
def artifacts(ml_slice, tmp_path):
    data_cfg = DataConfig(dataset="files", path=str(ml_slice), user_features=("gender",))
    data = run_data(data_cfg, tmp_path / "data")
    vectors = np.random.default_rng(0).normal(size=(len(data.items), 8)).astype(np.float32)
    write_version(tmp_path / "index" / "csft", data.items["item_id"].to_numpy(), vectors,
                  StoreInfo("csft", "test", 8))
    write_manifest(tmp_path / "index", "index", {})
    return data_cfg, data, tmp_path / "index"


@pytest.mark.parametrize("workers", [2])
def test_workers_give_the_same_models_as_one_process(artifacts, tmp_path, workers):
    data_cfg, data, index = artifacts
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier")),
                    variants=("din", "ciubm"),
                    train=TrainConfig(max_epochs=1, seeds=(0, 1), threads=1))
    one = run_ctr(cfg, data_cfg, data, tmp_path / "one", index_dir=index)
    many_cfg = CtrConfig(model=cfg.model, variants=cfg.variants,
                         train=TrainConfig(max_epochs=1, seeds=(0, 1), threads=1,
                                           workers=workers))
    many = run_ctr(many_cfg, data_cfg, data, tmp_path / "many", index_dir=index)
    assert list(one) == list(many) == ["din-seed0", "din-seed1", "ciubm-seed0", "ciubm-seed1"]
    with np.load(tmp_path / "one" / "predictions.npz") as a, \
            np.load(tmp_path / "many" / "predictions.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    for key in one:
        for metric in ("auc", "gauc", "logloss"):
            assert one[key]["test"][metric] == many[key]["test"][metric]
        assert many[key]["content"] == one[key]["content"]
        assert (tmp_path / "many" / f"{key}.safetensors").is_file()
    manifest = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert manifest["config"]["ctr"]["train"]["workers"] == workers
    assert one["din-seed0"]["content"] is None
