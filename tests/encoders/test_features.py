"""Caches of frozen tower bottoms are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mimrec.encoders.features import ImageFeatures, TextFeatures
from mimrec.encoders.image import load_image_tower, to_pixels
from mimrec.encoders.text import load_text_tower

TEXTS = ["toy story comedy", "dress", "golden eye action thriller war film 1995", "bag"]


@pytest.mark.parametrize("trainable", [0, 1, 2])
def test_text_cache_equals_the_whole_tower(tiny_text_dir: Path, trainable: int) -> None:
    tower = load_text_tower(tiny_text_dir, 16).eval()
    feats = TextFeatures(tower, TEXTS, trainable, batch_size=3)
    with torch.no_grad():
        expected = tower.encode(TEXTS)
        torch.testing.assert_close(feats.all_pooled(), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(feats.pooled([2, 0]), expected[[2, 0]], atol=1e-5, rtol=1e-5)


def test_text_cache_passes_gradients_to_the_top_layers_only(tiny_text_dir: Path) -> None:
    tower = load_text_tower(tiny_text_dir, 16).eval()
    feats = TextFeatures(tower, TEXTS, 1)
    feats.pooled([0, 1, 2]).sum().backward()
    assert tower.layers[1].output.dense.weight.grad is not None
    assert tower.layers[0].output.dense.weight.grad is None


@pytest.mark.parametrize("trainable", [0, 1, 3])
def test_image_cache_equals_the_whole_tower(tiny_image_file: Path, trainable: int) -> None:
    tower = load_image_tower(tiny_image_file, "efficientnet-lite0", 32)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    feats = ImageFeatures(tower, images, trainable, batch_size=2)
    with torch.no_grad():
        expected = tower(to_pixels(images, 32))
    torch.testing.assert_close(feats.all_pooled(), expected, atol=1e-5, rtol=1e-4)
