"""Fixtures: tiny random towers saved to disk once per session, and a toy catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from mimrec.encoders.attributes import build_vocab
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.item_encoder import ItemEncoder, build_item_encoder
from tests.encoders.tiny_towers import save_tiny_image_weights, save_tiny_text_model, toy_items


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny towers run fastest on one thread (and do not fight a busy machine's other jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT + tokenizer folder (save_pretrained)."""
    return save_tiny_text_model(tmp_path_factory.mktemp("tiny-text") / "model")


@pytest.fixture(scope="session")
def tiny_image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random EfficientNet-Lite0 state dict (.safetensors)."""
    return save_tiny_image_weights(tmp_path_factory.mktemp("tiny-image") / "lite0.safetensors")


@pytest.fixture
def items() -> pd.DataFrame:
    """12 toy items; even rows have an image."""
    return toy_items(12)


@pytest.fixture
def tiny_cfg(tiny_text_dir: Path, tiny_image_file: Path) -> EncoderConfig:
    """All three modalities on, tiny towers, 32 px images, D = 16."""
    return EncoderConfig(
        dim=16,
        text_model=str(tiny_text_dir),
        use_image=True,
        image_model=str(tiny_image_file),
        image_resolution=32,
        attribute_min_count=1,
        attribute_dim=8,
        progress=False,
    )


@pytest.fixture
def tiny_encoder(tiny_cfg: EncoderConfig, items: pd.DataFrame) -> ItemEncoder:
    """An encoder over the toy catalogue's vocabulary, fresh per test."""
    return build_item_encoder(tiny_cfg, build_vocab(items["attributes"], 1))
