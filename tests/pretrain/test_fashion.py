"""Protocol P3 pieces: the Fashion-MNIST reader, category-level texts, zero-shot figures, a run."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.artifacts import read_manifest
from mimrec.data.fashion import (
    FASHION_CLASSES,
    load_clothing_reviews,
    load_fashion_mnist,
)
from mimrec.encoders.config import EncoderConfig
from mimrec.errors import ConfigError, DataError
from mimrec.pretrain.config import PretrainConfig
from mimrec.pretrain.evaluate import zero_shot_metrics
from mimrec.pretrain.fashion import class_texts, run_fashion_alignment


def write_idx(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Fashion-MNIST IDX files (gzip, big-endian header) of the given arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    head = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.tobytes()))
    head = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(head + labels.astype(np.uint8).tobytes())
    )


def synthetic_fashion(folder: Path, n: int, seed: int) -> None:
    """Images whose brightness pattern depends on the class, so they are learnable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c : 2 * c + 8, :] = 250
    write_idx(folder, "train" if seed == 0 else "t10k", images, labels)


def synthetic_reviews(path: Path) -> Path:
    rows = [
        ("Lovely", "love this dress", "Dresses"),
        (None, "great jeans", "Jeans"),
        ("Warm", "cosy sweater", "Sweaters"),
        ("x", "nice", "Swim"),
        ("y", None, "Knits"),
    ]
    pd.DataFrame(rows, columns=["Title", "Review Text", "Class Name"]).to_parquet(path)
    return path


def test_idx_files_round_trip(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path, "t10k", images, np.array([3, 9]))
    got, labels = load_fashion_mnist("t10k", tmp_path)
    assert np.array_equal(got, images) and labels.tolist() == [3, 9]


def test_missing_fashion_files_name_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)


def test_reviews_map_to_fashion_classes_and_drop_the_rest(tmp_path: Path) -> None:
    reviews = load_clothing_reviews(synthetic_reviews(tmp_path / "r.parquet"))
    assert reviews["text"].tolist() == [
        "Lovely. love this dress",
        "great jeans",
        "Warm. cosy sweater",
    ]
    names = [FASHION_CLASSES[i] for i in reviews["label"]]
    assert names == ["Dress", "Trouser", "Pullover"]


def test_sampled_texts_are_of_the_image_class(tmp_path: Path) -> None:
    reviews = load_clothing_reviews(synthetic_reviews(tmp_path / "r.parquet"))
    texts = class_texts(PretrainConfig(), reviews)
    labels = np.repeat(np.arange(10), 50)
    rows = texts.sample(labels, prompt_share=0.5, rng=np.random.default_rng(0))
    assert np.array_equal(texts.label[rows], labels)
    bag = labels == FASHION_CLASSES.index("Bag")  # no reviews: prompts only
    assert texts.is_prompt[rows[bag]].all()
    dress = labels == FASHION_CLASSES.index("Dress")
    assert 0 < texts.is_prompt[rows[dress]].mean() < 1


def test_zero_shot_metrics_on_a_hand_made_case() -> None:
    prompts = torch.eye(3)
    images = torch.eye(3)[[0, 1, 2, 2]]
    labels = torch.tensor([0, 1, 2, 1])  # the last image looks like class 2
    m = zero_shot_metrics(images, labels, prompts)
    assert m["zero_shot_acc"] == m["i2t_r1"] == 0.75
    assert m["t2i_r1"] == 1.0


def test_eval_prompt_may_not_be_a_training_prompt() -> None:
    with pytest.raises(ValueError, match="zero-shot"):
        PretrainConfig(train_prompts=("a photo of a {}.",), eval_prompt="a photo of a {}.")


def test_fashion_run_needs_image_and_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="use_image"):
        run_fashion_alignment(PretrainConfig(), EncoderConfig(), tmp_path / "out", tmp_path)


def test_fashion_run_writes_p3_figures(tiny_cfg: EncoderConfig, tmp_path: Path) -> None:
    synthetic_fashion(tmp_path / "fm", 60, seed=0)
    synthetic_fashion(tmp_path / "fm", 30, seed=1)
    cfg = PretrainConfig(
        fashion_train_images=60, align_epochs=2, align_batch_size=20, adapt_batch_size=8
    )
    enc_cfg = dataclasses.replace(tiny_cfg, use_attributes=False)
    metrics = run_fashion_alignment(
        cfg, enc_cfg, tmp_path / "out", tmp_path / "fm", synthetic_reviews(tmp_path / "r.parquet")
    )
    for key in ("zero_shot_acc", "i2t_r1", "t2i_r1", "zero_shot_acc_before"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["train_images"] == 60 and metrics["test_images"] == 30
    assert read_manifest(tmp_path / "out")["metrics"]["zero_shot_acc"] == metrics["zero_shot_acc"]
