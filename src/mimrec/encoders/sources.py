"""Training inputs of every switched-on modality of a catalogue, with frozen parts cached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mimrec.encoders.features import ImageFeatures, TextFeatures
from mimrec.encoders.fusion import Modality
from mimrec.encoders.image import decode_image
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.encoders.text import item_texts


class ItemSources:
    """Per-modality tower inputs of the rows of an items table.

    Text and image towers are cut (see :mod:`mimrec.encoders.features`) so only their trainable
    tops run per step; the attribute tower is cheap and always runs whole.

    Args:
        encoder: the item encoder being trained.
        items: the catalogue (every row, training and held-out).
        text_trainable_layers: top text layers left trainable.
        image_trainable_blocks: top image blocks left trainable.

    Shapes: :meth:`embed` takes rows (B,) and returns (B, D); ``present`` is (N, M) bool.
    """

    def __init__(
        self,
        encoder: ItemEncoder,
        items: pd.DataFrame,
        text_trainable_layers: int,
        image_trainable_blocks: int,
    ) -> None:
        self.encoder = encoder
        self.present = torch.zeros((len(items), len(Modality)), dtype=torch.bool)
        self.text: TextFeatures | None = None
        self.text_pooled: torch.Tensor | None = None
        self.image: ImageFeatures | None = None
        self.image_index = torch.full((len(items),), -1, dtype=torch.long)
        self.attributes: list[object] = []
        if encoder.text_tower is not None:
            self._add_text(items, text_trainable_layers)
        if encoder.image_tower is not None and "image" in items.columns:
            self._add_images(items, image_trainable_blocks)
        if encoder.attribute_tower is not None and "attributes" in items.columns:
            self.attributes = list(items["attributes"])
            _, _, has = encoder.attribute_tower.token_ids(self.attributes)
            self.present[:, Modality.ATTRIBUTES.value] = has

    def _add_text(self, items: pd.DataFrame, trainable_layers: int) -> None:
        cfg = self.encoder.cfg
        texts = item_texts(items, cfg.text_fields)
        self.present[:, Modality.TEXT.value] = torch.tensor([t != "" for t in texts])
        self.text = TextFeatures(
            self.encoder.text_tower, texts, trainable_layers, cfg.text_batch_size, cfg.progress
        )

    def _add_images(self, items: pd.DataFrame, trainable_blocks: int) -> None:
        cfg = self.encoder.cfg
        images = [decode_image(v) for v in items["image"]]
        rows = [i for i, img in enumerate(images) if img is not None]
        if not rows:
            return
        self.image_index[rows] = torch.arange(len(rows))
        self.present[rows, Modality.IMAGE.value] = True
        kept = [images[i] for i in rows]
        self.image = ImageFeatures(
            self.encoder.image_tower, kept, trainable_blocks, cfg.image_batch_size, cfg.progress
        )

    def freeze_text(self) -> None:
        """Cache the text tower's current pooled output (eval mode); later steps read the cache."""
        if self.text is not None:
            self.text_pooled = self.text.all_pooled()  # (N, H)

    def features(self, modality: Modality, rows: torch.Tensor) -> torch.Tensor:
        """Tower output of ``rows`` for one modality (they must have it). Shapes: (B, H_m)."""
        match modality:
            case Modality.TEXT:
                if self.text_pooled is not None:
                    return self.text_pooled[rows]
                return self.text.pooled(rows)
            case Modality.IMAGE:
                return self.image.pooled(self.image_index[rows])
            case Modality.ATTRIBUTES:
                tower = self.encoder.attribute_tower
                ids, offsets, _ = tower.token_ids([self.attributes[r] for r in rows.tolist()])
                return tower(ids, offsets)

    def embed(self, modality: Modality, rows: torch.Tensor) -> torch.Tensor:
        """Projected, normalised embeddings of ``rows`` for one modality. Shapes: (B, D)."""
        return self.encoder.project(modality, self.features(modality, rows))

    def has(self, modality: Modality) -> bool:
        """Whether any row has this modality."""
        return bool(self.present[:, modality.value].any())


def item_views(encoder: ItemEncoder, sources: ItemSources,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused and per-modality embeddings of catalogue rows (each must have some modality).

    Shapes: rows (N,) -> fused (N, D), per-modality (N, M, D) (zeros where absent), present (N, M).
    """
    present = sources.present[rows]  # (N, M)
    views = []
    for m in Modality:
        has = torch.nonzero(present[:, m.value]).squeeze(1)
        view = torch.zeros((len(rows), encoder.cfg.dim))
        if has.numel():
            view = view.index_copy(0, has, sources.embed(m, rows[has]))
        views.append(view)
    per = torch.stack(views, dim=1)  # (N, M, D)
    return encoder.fusion(per, present), per, present


@torch.no_grad()
def catalogue_vectors(encoder: ItemEncoder, sources: ItemSources, chunk: int = 512) -> np.ndarray:
    """Fused vectors of every catalogue row (zeros for rows with no modality). Shapes: (I, D)."""
    n = sources.present.shape[0]
    out = torch.zeros((n, encoder.cfg.dim))
    rows = torch.nonzero(sources.present.any(dim=1)).squeeze(1)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        out[part] = item_views(encoder, sources, part)[0]
    return out.numpy().astype(np.float32)
