"""Stage 1 on real data with the packaged weights (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimrec.data.fashion import FASHION_DIR
from mimrec.encoders.config import EncoderConfig
from mimrec.pretrain.config import PretrainConfig
from mimrec.pretrain.fashion import run_fashion_alignment
from mimrec.pretrain.train import load_pretrained_encoder, run_pretrain

pytestmark = pytest.mark.slow


def test_movielens_pretrain_writes_an_encoder_for_every_item(ml100k, tmp_path: Path) -> None:
    cfg = PretrainConfig(threads=1, align_epochs=5)
    metrics = run_pretrain(cfg, EncoderConfig(progress=False), ml100k.items, tmp_path / "pre")
    assert metrics["items_heldout"] == round(0.15 * len(ml100k.items))
    assert metrics["align_loss"][-1] < metrics["align_loss"][0]
    emb = load_pretrained_encoder(tmp_path / "pre").encode_items(ml100k.items.iloc[:50])
    assert emb.shape == (50, 128)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt-get install -y dataset-fashion-mnist")
def test_fashion_alignment_beats_chance_by_far(tmp_path: Path) -> None:
    cfg = PretrainConfig(threads=1, fashion_train_images=3000, align_epochs=5)
    enc = EncoderConfig(
        use_image=True,
        use_attributes=False,
        text_max_length=48,
        image_resolution=32,
        progress=False,
    )
    metrics = run_fashion_alignment(cfg, enc, tmp_path / "p3")
    assert metrics["zero_shot_acc"] > 0.6
    assert metrics["zero_shot_acc_before"] < 0.2
