"""Item encoder: fusion over present modalities, the missing-image path, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.encoders.attributes import build_vocab
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.fusion import GatedFusion
from mimrec.encoders.item_encoder import ItemEncoder, build_item_encoder
from mimrec.errors import MimrecError


def _switched_off_image(encoder: ItemEncoder, items: pd.DataFrame) -> ItemEncoder:
    cfg = dataclasses.replace(encoder.cfg, use_image=False)
    off = build_item_encoder(cfg, build_vocab(items["attributes"], 1))
    state = {
        k: v
        for k, v in encoder.state_dict().items()
        if not k.startswith(("image_tower.", "image_projection."))
    }
    off.load_state_dict(state, strict=True)
    return off


def test_item_without_image_equals_image_switched_off(
    tiny_encoder: ItemEncoder, items: pd.DataFrame
) -> None:
    with torch.no_grad():
        tiny_encoder.fusion.logits.copy_(torch.tensor([0.3, 1.0, -0.5]))  # unequal weights
    full = tiny_encoder.encode_items(items)
    off = _switched_off_image(tiny_encoder, items).encode_items(items)
    no_image = items["image"].isna().to_numpy()
    assert no_image.any() and (~no_image).any()
    np.testing.assert_array_equal(full[no_image], off[no_image])
    assert not np.allclose(full[~no_image], off[~no_image], atol=1e-3)


def test_embeddings_are_unit_norm_deterministic_and_follow_row_order(
    tiny_encoder: ItemEncoder, items: pd.DataFrame
) -> None:
    tiny_encoder.train()  # encode_items must switch to eval mode by itself
    a = tiny_encoder.encode_items(items)
    b = tiny_encoder.encode_items(items)
    assert tiny_encoder.training
    assert a.shape == (len(items), tiny_encoder.cfg.dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    perm = np.random.default_rng(1).permutation(len(items))
    c = tiny_encoder.encode_items(items.iloc[perm].reset_index(drop=True))
    np.testing.assert_allclose(c, a[perm], atol=1e-5)


def test_content_changes_the_embedding(tiny_encoder: ItemEncoder, items: pd.DataFrame) -> None:
    other = items.copy()
    other.loc[1, "title"] = "horror romance war"
    a, b = tiny_encoder.encode_items(items), tiny_encoder.encode_items(other)
    assert not np.allclose(a[1], b[1]) and np.allclose(np.delete(a, 1, 0), np.delete(b, 1, 0))


def test_item_with_no_switched_on_modality_is_a_clear_error(
    tiny_cfg: EncoderConfig, items: pd.DataFrame
) -> None:
    cfg = dataclasses.replace(tiny_cfg, use_text=False, use_image=False)
    encoder = build_item_encoder(cfg, build_vocab(items["attributes"], 1))
    bare = items.copy()
    bare.at[3, "attributes"] = ["unknown:token"]
    with pytest.raises(MimrecError, match="'4'"):
        encoder.encode_items(bare)


def test_fusion_weights_are_a_softmax_over_present_modalities() -> None:
    fusion = GatedFusion()
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
    w = fusion.weights(torch.tensor([[True, False, True], [True, True, True]]))
    torch.testing.assert_close(w[0], torch.softmax(torch.tensor([0.0, -1e9, 2.0]), 0))
    assert w[0, 1] == 0 and torch.allclose(w.sum(1), torch.ones(2))


def test_config_needs_a_modality() -> None:
    with pytest.raises(ValueError, match="at least one"):
        EncoderConfig(use_text=False, use_image=False, use_attributes=False)


def test_items_without_content_get_the_zero_vector_only_when_allowed(tiny_encoder, items):
    """The catalogue fallback (index stage): no text, image or known token -> zero vector; the
    other items' vectors are those they get without the empty ones around."""
    empty = items.iloc[:2].assign(title="", year=None, genres=[[], []], attributes=[[], []],
                                  image=[None, None], item_id=["e1", "e2"])
    mixed = pd.concat([items, empty], ignore_index=True)
    with pytest.raises(MimrecError, match="'e1' has none of the switched-on modalities"):
        tiny_encoder.encode_items(mixed)
    vectors = tiny_encoder.encode_items(mixed, allow_empty=True)
    assert np.all(vectors[-2:] == 0)
    np.testing.assert_allclose(vectors[:-2], tiny_encoder.encode_items(items), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors[:-2], axis=1), 1, atol=1e-5)
