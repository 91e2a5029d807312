"""Save and load an item encoder: safetensors weights + JSON config, no pickles.

A saved encoder is a folder:

* ``encoder.json``: format version, the resolved :class:`EncoderConfig`, the attribute vocabulary;
* ``encoder.safetensors``: every weight (towers, projections, attribute bag, fusion);
* ``text/``: the text model's ``config.json`` and tokenizer files (architecture, not weights);
* ``image/``: with ``image_arch`` "hf", the image model's ``config.json`` and a
  ``preprocessor_config.json`` holding the normalisation mean/std the tower uses.

Loading builds the architecture without pretrained weights and fills it from
``encoder.safetensors``, so a loaded encoder reproduces the saved one's embeddings exactly and does
not depend on the original model folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mimrec.encoders.attributes import AttributeTower
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.image import (
    HF_PREPROCESSOR_FILE,
    HFImageTower,
    ImageTower,
    build_backbone,
    build_hf_image_tower,
    read_hf_normalisation,
)
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.encoders.text import TextTower
from mimrec.errors import MimrecError

CONFIG_FILE = "encoder.json"
WEIGHTS_FILE = "encoder.safetensors"
TEXT_DIR = "text"
IMAGE_DIR = "image"
FORMAT = 1


def save_item_encoder(encoder: ItemEncoder, folder: Path) -> None:
    """Write ``encoder`` into ``folder`` (created if needed; files are replaced).

    Args:
        encoder: the encoder to save.
        folder: the target folder; use it inside :func:`mimrec.artifacts.stage_dir` for atomicity.
    """
    from safetensors.torch import save_file

    from mimrec.serialize import to_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if encoder.text_tower is not None:
        encoder.text_tower.model.config.save_pretrained(folder / TEXT_DIR)
        encoder.text_tower.tokenizer.save_pretrained(folder / TEXT_DIR)
    if isinstance(encoder.image_tower, HFImageTower):
        _save_hf_image_architecture(encoder.image_tower, folder / IMAGE_DIR)
    state = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE)
    vocab = list(encoder.attribute_tower.vocab) if encoder.attribute_tower is not None else []
    meta = {"format": FORMAT, "config": to_dict(encoder.cfg), "vocab": vocab}
    (folder / CONFIG_FILE).write_text(json.dumps(meta) + "\n")


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise MimrecError(f"{folder} is not a saved item encoder (missing {CONFIG_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MimrecError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise MimrecError(f"{path}: unknown encoder format {found!r}, expected {FORMAT}")
    return meta


def _text_architecture(folder: Path, max_length: int) -> TextTower:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MimrecError(
            f"cannot read the saved text model files in {folder}: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None
    return TextTower(AutoModel.from_config(config), tokenizer, max_length)


def _save_hf_image_architecture(tower: HFImageTower, folder: Path) -> None:
    tower.backbone.config.save_pretrained(folder)
    spec = {
        "do_normalize": True,
        "image_mean": [m / 255.0 for m in tower.mean],
        "image_std": [v / 255.0 for v in tower.std],
    }
    (folder / HF_PREPROCESSOR_FILE).write_text(json.dumps(spec) + "\n")


def _image_architecture(folder: Path, cfg: EncoderConfig) -> ImageTower:
    if cfg.image_arch != "hf":
        backbone = build_backbone(cfg.image_arch, cfg.image_resolution)
        return ImageTower(backbone, cfg.image_resolution)
    from transformers import AutoConfig, AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise MimrecError(
            f"cannot read the saved image model files in {folder}: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None
    mean, std = read_hf_normalisation(folder)
    return build_hf_image_tower(AutoModel.from_config(config), cfg.image_resolution, mean, std)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise MimrecError(f"saved encoder weights not found: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise MimrecError(f"cannot read encoder weights {path}: {exc}") from None


def load_item_encoder(folder: Path) -> ItemEncoder:
    """Load an encoder written by :func:`save_item_encoder`, in eval mode.

    Args:
        folder: the saved encoder's folder. A missing folder, a missing or damaged file, or weights
            that do not fit the saved config raise :class:`MimrecError` naming the path.
    """
    from mimrec.serialize import from_dict

    folder = Path(folder)
    if not folder.is_dir():
        raise MimrecError(f"saved item encoder folder not found: {folder}")
    meta = _read_meta(folder)
    cfg = from_dict(EncoderConfig, meta["config"], "encoder")
    text = _text_architecture(folder / TEXT_DIR, cfg.text_max_length) if cfg.use_text else None
    image = _image_architecture(folder / IMAGE_DIR, cfg) if cfg.use_image else None
    attributes = AttributeTower(meta["vocab"], cfg.attribute_dim) if cfg.use_attributes else None
    encoder = ItemEncoder(cfg, text, image, attributes)
    state = _read_weights(folder / WEIGHTS_FILE)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MimrecError(
            f"weights in {folder / WEIGHTS_FILE} do not fit the saved config: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return encoder.eval()


def load_stage_encoder(folder: Path, stage: str) -> ItemEncoder:
    """The item encoder of a finished ``stage`` artifact (e.g. "pretrain", "csft"), in eval mode.

    A folder another stage wrote, or none at all, raises :class:`MimrecError` naming it.
    """
    from mimrec.artifacts import require_stage

    require_stage(Path(folder), stage)
    return load_item_encoder(Path(folder))
