"""The ``raw`` vector source: the pretrained text model's own mean-pooled vectors, untrained.

Raw vectors are the reference every trained source is measured against (protocol P2) and the
fallback the index stage stores when a trained source does not beat them on valid. A
:class:`RawTextEncoder` embeds new items the same way, so a store built from raw vectors can grow
while serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.text import TextTower, default_text_model, item_texts, load_text_tower
from mimrec.errors import MimrecError

RAW_PREFIX = "raw:"  # store encoder names of raw vectors: "raw:<model folder name>"


@dataclass
class RawTextEncoder:
    """Mean-pooled, L2-normalised text-model vectors of an item's text fields; no projection.

    Has the parts of :class:`~mimrec.encoders.item_encoder.ItemEncoder` the serving path reads
    (``cfg``, ``text_tower``, ``image_tower``, :meth:`encode_items`).

    Args:
        cfg: names the text model, the text fields, max length and batch size.
        text_tower: the loaded text model.
    """

    cfg: EncoderConfig
    text_tower: TextTower
    image_tower: None = None

    def vectors(self, items: pd.DataFrame) -> np.ndarray:
        """Vectors of every row (zero rows for items without text). Shapes: N -> (N, H) float32."""
        texts = item_texts(items, self.cfg.text_fields)
        with torch.inference_mode():
            out = self.text_tower.encode(texts, self.cfg.text_batch_size)
        vectors = torch.nn.functional.normalize(out, dim=-1).numpy().astype(np.float32)
        vectors[[t == "" for t in texts]] = 0.0  # no text: the zero vector (mimrec.data.content)
        return vectors

    def encode_items(self, items: pd.DataFrame) -> np.ndarray:
        """As :meth:`vectors`, but an item without text raises :class:`MimrecError` naming it."""
        texts = item_texts(items, self.cfg.text_fields)
        if "" in texts:
            row = texts.index("")
            item = items["item_id"].iloc[row] if "item_id" in items.columns else row
            raise MimrecError(f"item {item!r} has none of the switched-on modalities (raw text "
                              f"vectors read only {', '.join(self.cfg.text_fields)}, all empty): "
                              "it cannot be embedded")
        return self.vectors(items)


def text_model_folder(cfg: EncoderConfig) -> Path:
    """The text model folder the config names ("" = the packaged all-MiniLM-L6-v2)."""
    return Path(cfg.text_model) if cfg.text_model else default_text_model()


def raw_encoder_identity(cfg: EncoderConfig) -> tuple[str, str]:
    """(store encoder name, sha256 of the model's first weights file) of the raw source."""
    from mimrec.artifacts import file_sha256

    folder = text_model_folder(cfg)
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return RAW_PREFIX + folder.name, file_sha256(weights[0]) if weights else "unknown"


def load_raw_text_encoder(cfg: EncoderConfig) -> RawTextEncoder:
    """Load the config's text model (offline) as a :class:`RawTextEncoder`."""
    return RawTextEncoder(cfg, load_text_tower(cfg.text_model, cfg.text_max_length))


def raw_text_vectors(cfg: EncoderConfig, items: pd.DataFrame) -> np.ndarray:
    """The original text model's mean-pooled vectors of the item texts (no projection, no tuning).

    Shapes: N items -> (N, H) float32, unit norm (zero rows for items without text).
    """
    return load_raw_text_encoder(cfg).vectors(items)
