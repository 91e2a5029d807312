"""Saving and loading an item encoder: identical embeddings, clear errors for broken folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.encoders.checkpoint import WEIGHTS_FILE, load_item_encoder, save_item_encoder
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.errors import MimrecError


@pytest.fixture
def saved(tiny_encoder: ItemEncoder, tmp_path: Path) -> Path:
    with torch.no_grad():  # make every trained part differ from a fresh build
        for p in tiny_encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_item_encoder(tiny_encoder, tmp_path / "enc")
    return tmp_path / "enc"


def test_loaded_encoder_gives_identical_embeddings(
    tiny_encoder: ItemEncoder, saved: Path, items: pd.DataFrame
) -> None:
    loaded = load_item_encoder(saved)
    assert loaded.cfg == tiny_encoder.cfg
    assert loaded.attribute_tower.vocab == tiny_encoder.attribute_tower.vocab
    np.testing.assert_array_equal(loaded.encode_items(items), tiny_encoder.encode_items(items))


def test_saved_folder_has_no_pickles(saved: Path) -> None:
    names = {p.name for p in saved.rglob("*")}
    assert {"encoder.json", WEIGHTS_FILE, "config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)


def test_missing_folder_or_files_are_clear_errors(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(MimrecError, match="not found"):
        load_item_encoder(tmp_path / "missing")
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(MimrecError, match=str(saved / WEIGHTS_FILE)):
        load_item_encoder(saved)
    (saved / "encoder.json").unlink()
    with pytest.raises(MimrecError, match="missing encoder.json"):
        load_item_encoder(saved)


def test_corrupt_weights_or_config_are_clear_errors(saved: Path) -> None:
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(MimrecError, match="cannot read encoder weights"):
        load_item_encoder(saved)
    (saved / "encoder.json").write_text("{broken")
    with pytest.raises(MimrecError, match="not valid JSON"):
        load_item_encoder(saved)


def test_weights_that_do_not_fit_the_config_are_refused(saved: Path) -> None:
    meta = json.loads((saved / "encoder.json").read_text())
    meta["config"]["dim"] = 8
    (saved / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(MimrecError, match="do not fit the saved config"):
        load_item_encoder(saved)
