"""Stage-1 training: what trains, what stays frozen, the artifact it writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.artifacts import read_manifest
from mimrec.encoders.config import EncoderConfig
from mimrec.errors import MimrecError
from mimrec.pretrain.config import PretrainConfig
from mimrec.pretrain.train import (
    load_pretrained_encoder,
    run_pretrain,
    split_items,
    train_encoder,
)
from tests.encoders.tiny_towers import toy_items

FAST = PretrainConfig(
    adapt_batch_size=8, align_batch_size=16, align_epochs=3, lr=1e-2, image_trainable_blocks=0
)


def test_holdout_is_deterministic_and_honours_explicit_ids() -> None:
    ids = pd.Series([str(i) for i in range(100)])
    cfg = PretrainConfig(holdout_fraction=0.2, seed=3)
    train_a, held_a = split_items(ids, None, cfg)
    _, held_b = split_items(ids.sample(frac=1, random_state=0).sort_index(), None, cfg)
    assert len(held_a) == 20 and np.array_equal(held_a, held_b)
    assert set(train_a) | set(held_a) == set(range(100))
    train, held = split_items(ids, ["1", "5"], cfg)
    assert train.tolist() == [1, 5] and len(held) == 98
    with pytest.raises(MimrecError, match="no items"):
        split_items(ids, ["x"], cfg)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_only_the_configured_layers_train(tiny_cfg: EncoderConfig) -> None:
    items = toy_items(24)
    # no held-out items: nothing to select on, so the last epoch is kept (see the next test)
    cfg = dataclasses.replace(FAST, text_trainable_layers=1, image_trainable_blocks=1,
                              holdout_fraction=0.0)
    encoder, _ = train_encoder(cfg, tiny_cfg, items)
    fresh, _ = train_encoder(
        dataclasses.replace(cfg, adapt_epochs=0, align_epochs=0), tiny_cfg, items
    )
    before, after = _params(fresh), _params(encoder)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("text_tower.model.encoder.layer.1.") for k in changed)
    assert any(k.startswith("image_tower.backbone._blocks.15.") for k in changed)
    assert {"text_projection.weight", "attribute_projection.weight"} <= changed
    frozen = (
        "text_tower.model.embeddings.",
        "text_tower.model.encoder.layer.0.",
        "image_tower.backbone._blocks.14.",
        "image_tower.backbone._conv_stem.",
        "fusion.",
    )
    assert not [k for k in changed if k.startswith(frozen)]


def test_alignment_keeps_its_best_epoch_by_the_selection_score(
    tiny_cfg: EncoderConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = toy_items(24, with_images=False)
    enc = dataclasses.replace(tiny_cfg, use_image=False)
    cfg = dataclasses.replace(FAST, align_epochs=8, patience=2)
    fresh, _ = train_encoder(dataclasses.replace(cfg, align_epochs=0), enc, items)
    scores = iter([0.3, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # epoch 0 is the best
    monkeypatch.setattr("mimrec.pretrain.train.selection_score",
                        lambda *_args: ("fake", lambda: next(scores)))
    encoder, metrics = train_encoder(cfg, enc, items)
    assert metrics["select_by_epoch"] == [0.3, 0.2, 0.1] and metrics["epochs_run"] == 2
    assert metrics["best_epoch"] == 0 and metrics["select_on"] == "fake"
    for name, value in _params(fresh).items():  # the weights before alignment, restored
        torch.testing.assert_close(_params(encoder)[name], value, msg=name)


def test_alignment_pulls_the_modalities_of_an_item_together(tiny_cfg: EncoderConfig) -> None:
    items = toy_items(32, with_images=False)
    cfg = dataclasses.replace(FAST, align_epochs=30, holdout_fraction=0.0)
    _, metrics = train_encoder(cfg, dataclasses.replace(tiny_cfg, use_image=False), items)
    losses = metrics["align_loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_run_pretrain_writes_a_loadable_artifact(tiny_cfg: EncoderConfig, tmp_path: Path) -> None:
    items = toy_items(30)
    metrics = run_pretrain(FAST, tiny_cfg, items, tmp_path / "pre")
    manifest = read_manifest(tmp_path / "pre")
    assert manifest["stage"] == "pretrain" and manifest["metrics"] == json.loads(
        json.dumps(metrics)
    )
    assert manifest["config"]["pretrain"]["align_epochs"] == 3
    for key in (
        "text->attributes_recall@10_before",
        "text->attributes_recall@10_after",
        "text->attributes_recall@10_chance",
        "align_loss",
        "temperature",
        "seconds",
    ):
        assert key in metrics
    emb = load_pretrained_encoder(tmp_path / "pre").encode_items(items)
    assert emb.shape == (30, tiny_cfg.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_loading_a_folder_that_is_not_a_pretrain_artifact_fails(tmp_path: Path) -> None:
    with pytest.raises(MimrecError, match="not a finished mimrec artifact"):
        load_pretrained_encoder(tmp_path)


def test_alignment_generalises_to_held_out_items(tiny_cfg: EncoderConfig) -> None:
    """When attributes carry the text's content (here: its words), retrieval on items never seen
    in pre-training rises far above chance; the stage learns the mapping, not the items."""
    rng = np.random.default_rng(0)
    vocab = [
        "toy",
        "story",
        "golden",
        "eye",
        "four",
        "rooms",
        "comedy",
        "drama",
        "action",
        "thriller",
        "war",
        "horror",
        "romance",
        "dress",
        "shirt",
        "coat",
        "bag",
        "boot",
    ]
    words = [rng.choice(vocab, size=3, replace=False) for _ in range(150)]
    items = pd.DataFrame(
        {
            "item_id": [str(i) for i in range(150)],
            "title": [" ".join(w) for w in words],
            "year": "",
            "genres": "",
            "attributes": [[f"word:{x}" for x in w] for w in words],
        }
    )
    enc = dataclasses.replace(tiny_cfg, use_image=False, dim=32, attribute_dim=32)
    cfg = dataclasses.replace(
        FAST,
        holdout_fraction=0.2,
        align_epochs=60,
        recall_k=5,
        align_batch_size=32,
        text_trainable_layers=0,
    )
    _, metrics = train_encoder(cfg, enc, items)
    chance = metrics["text->attributes_recall@5_chance"]
    assert metrics["text->attributes_recall@5_after"] > 3 * chance
    assert metrics["text->attributes_recall@5_after"] > metrics["text->attributes_recall@5_before"]
