"""Shared fixtures of the CTR tests."""

import numpy as np
import pytest

from mimrec.artifacts import write_manifest
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
