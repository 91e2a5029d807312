"""Hugging Face image tower: a tiny random ViT folder as the image model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.encoders.checkpoint import load_item_encoder, save_item_encoder
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.features import ImageFeatures
from mimrec.encoders.image import HFImageTower, load_hf_image_tower
from mimrec.encoders.item_encoder import build_item_encoder
from mimrec.errors import MimrecError


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random ViT for 32 px images, saved with save_pretrained."""
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit") / "model"
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).eval().save_pretrained(folder)
    return folder


def _grey_items(n: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(n)]
    return pd.DataFrame({"item_id": [str(i) for i in range(n)], "image": images})


def _image_only_cfg(folder: Path) -> EncoderConfig:
    return EncoderConfig(
        dim=16,
        use_text=False,
        use_image=True,
        use_attributes=False,
        image_arch="hf",
        image_model=str(folder),
        image_resolution=64,  # the ViT only takes 32 px: its image_size wins
        progress=False,
    )


def test_hf_folder_encodes_grey_images_to_unit_vectors(tiny_vit_dir: Path) -> None:
    encoder = build_item_encoder(_image_only_cfg(tiny_vit_dir))
    assert isinstance(encoder.image_tower, HFImageTower)
    assert encoder.image_tower.resolution == 32 and encoder.image_tower.dim == 32
    items = _grey_items()
    first, second = encoder.encode_items(items), encoder.encode_items(items)
    assert first.shape == (4, 16) and np.isfinite(first).all()
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, second)


def test_hf_image_encoder_round_trips(tiny_vit_dir: Path, tmp_path: Path) -> None:
    encoder = build_item_encoder(_image_only_cfg(tiny_vit_dir)).eval()
    save_item_encoder(encoder, tmp_path / "saved")
    assert (tmp_path / "saved" / "image" / "config.json").is_file()
    loaded = load_item_encoder(tmp_path / "saved")
    items = _grey_items()
    np.testing.assert_array_equal(loaded.encode_items(items), encoder.encode_items(items))


def test_hf_tower_is_one_block_for_feature_caching(tiny_vit_dir: Path) -> None:
    tower = load_hf_image_tower(tiny_vit_dir, 32)
    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        expected = tower(tower.pixels(images))
    assert tower.num_blocks == 1 and len(tower.top_parameters(1)) > 0
    assert tower.top_parameters(0) == []
    for blocks in (0, 1):
        cached = ImageFeatures(tower, images, trainable_blocks=blocks)
        torch.testing.assert_close(cached.all_pooled(), expected)


def test_imagenet_normalisation_without_a_preprocessor_config(tiny_vit_dir: Path) -> None:
    tower = load_hf_image_tower(tiny_vit_dir, 32)
    white = tower.pixels([np.full((2, 2), 255, dtype=np.uint8)])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(white[0, :, 0, 0], (1 - mean) / std)


def test_missing_or_broken_hf_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MimrecError, match="nowhere"):
        load_hf_image_tower(tmp_path / "nowhere", 32)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(MimrecError, match="broken"):
        build_item_encoder(_image_only_cfg(broken))
