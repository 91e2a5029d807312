"""The packaged pretrained towers (slow: real weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mimrec.encoders.image import load_image_tower, to_pixels
from mimrec.encoders.text import default_text_model, item_texts, load_text_tower

pytestmark = pytest.mark.slow


def test_minilm_tower_matches_sentence_transformers(ml100k) -> None:
    st = pytest.importorskip("sentence_transformers")
    texts = item_texts(ml100k.items.iloc[:64], ("title", "year", "genres"))
    ours = load_text_tower("", max_length=256).encode(texts)
    theirs = st.SentenceTransformer(str(default_text_model()), device="cpu").encode(
        texts, convert_to_tensor=True
    )
    assert F.cosine_similarity(ours, theirs.float()).min() > 0.9999


def test_efficientnet_lite0_recognises_the_sklearn_sample_photos() -> None:
    from sklearn.datasets import load_sample_image

    tower = load_image_tower("", "efficientnet-lite0", 224)
    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    with torch.no_grad():
        logits = tower.backbone._fc(tower(to_pixels(photos, 224)))  # (2, 1000) ImageNet
    assert logits.argmax(1).tolist() == [442, 985]
    assert np.isfinite(logits.numpy()).all()
