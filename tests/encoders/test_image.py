"""Image tower: preprocessing, loading weights, the frozen/trainable cut."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from mimrec.encoders.image import decode_image, load_image_tower, to_pixels
from mimrec.errors import MimrecError


def test_grey_images_become_three_equal_channels_scaled_like_lite() -> None:
    grey = np.array([[0, 127], [255, 127]], dtype=np.uint8)
    pixels = to_pixels([grey], resolution=2)
    assert pixels.shape == (1, 3, 2, 2)
    assert torch.equal(pixels[0, 0], pixels[0, 1]) and torch.equal(pixels[0, 1], pixels[0, 2])
    assert pixels[0, 0].tolist() == [[-127 / 128, 0.0], [1.0, 0.0]]


def test_images_are_resized_and_mixed_sizes_work() -> None:
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    grey = np.full((28, 28), 255, dtype=np.uint8)
    pixels = to_pixels([rgb, grey], resolution=32)
    assert pixels.shape == (2, 3, 32, 32)
    assert torch.allclose(pixels[1], torch.ones(3, 32, 32))


def test_decode_png_bytes_and_missing_values() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((5, 4), 200, dtype=np.uint8)).save(buf, format="PNG")
    img = decode_image(buf.getvalue())
    assert img.shape == (5, 4, 3) and int(img.max()) == 200
    assert decode_image(None) is None and decode_image(float("nan")) is None
    with pytest.raises(MimrecError, match="cannot read image"):
        decode_image(b"not an image")


def test_weights_file_loads_and_cut_equals_whole(tiny_image_file: Path) -> None:
    tower = load_image_tower(tiny_image_file, "efficientnet-lite0", 32)
    pixels = to_pixels(np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8), 32)
    with torch.no_grad():
        whole = tower(pixels)
        cut = tower.pooled_from(tower.features_at(pixels, 14), 14)
    assert whole.shape == (3, tower.dim) == (3, 1280)
    torch.testing.assert_close(cut, whole)


def test_missing_or_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MimrecError, match="not found"):
        load_image_tower(tmp_path / "none.safetensors", "efficientnet-lite0", 32)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(MimrecError, match="bad.safetensors"):
        load_image_tower(bad, "efficientnet-lite0", 32)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, path)
    with pytest.raises(MimrecError, match="do not fit efficientnet-lite0"):
        load_image_tower(path, "efficientnet-lite0", 32)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(10_000, 10_000), (20_000, 20_000), (5_000, 5_000)])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(size) -> None:
    """A 12 KB PNG declaring 10000 x 10000 pixels decoded to a 286 MiB array before; a larger
    one raised PIL's decompression-bomb error. Both are now one MimrecError naming the size."""
    from tests.png_bombs import declared_png

    bomb = declared_png(*size)
    assert len(bomb) < 20_000
    with pytest.raises(MimrecError, match="cannot read image image bytes: .*pixels|bomb"):
        decode_image(bomb)


def test_a_truncated_image_is_a_mimrec_error() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, format="PNG")
    for cut in (20, 40, len(buf.getvalue()) // 2):
        with pytest.raises(MimrecError, match="cannot read image"):
            decode_image(buf.getvalue()[:cut])
