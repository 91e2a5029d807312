"""The multi-modal item encoder: towers -> per-modality projection to D -> gated fusion.

Every switched-on modality an item has goes through its tower, a linear projection to the shared
dimension D and L2 normalisation; :class:`~mimrec.encoders.fusion.GatedFusion` mixes the present
ones into one unit vector. MovieLens items have text and attributes but no image; Fashion-MNIST
items have an image and a class text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from mimrec.encoders.attributes import AttributeTower
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.fusion import GatedFusion, Modality
from mimrec.encoders.image import ImageTower, decode_image, load_image_tower
from mimrec.encoders.text import TextTower, item_texts, load_text_tower
from mimrec.errors import MimrecError


@dataclass
class TowerOutputs:
    """Raw tower outputs of N items, before projection; None where the tower is off.

    Shapes: text (N, H), image (N, F), attributes (N, E); rows of absent modalities are zeros.
    present (N, M) bool in :class:`Modality` order.
    """

    text: torch.Tensor | None
    image: torch.Tensor | None
    attributes: torch.Tensor | None
    present: torch.Tensor


class ItemEncoder(nn.Module):
    """Towers, projections and fusion; one L2-normalised D-vector per item.

    Args:
        cfg: the encoder config (switches, dimensions, batch sizes).
        text_tower: the text tower, or None when ``use_text`` is off.
        image_tower: the image tower, or None when ``use_image`` is off.
        attribute_tower: the attribute tower, or None when ``use_attributes`` is off.

    Shapes: :meth:`embed` takes :class:`TowerOutputs` of N items and returns (N, D).
    """

    def __init__(
        self,
        cfg: EncoderConfig,
        text_tower: TextTower | None,
        image_tower: ImageTower | None,
        attribute_tower: AttributeTower | None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_tower = text_tower
        self.image_tower = image_tower
        self.attribute_tower = attribute_tower
        self.text_projection = nn.Linear(text_tower.dim, cfg.dim) if text_tower else None
        self.image_projection = nn.Linear(image_tower.dim, cfg.dim) if image_tower else None
        self.attribute_projection = (
            nn.Linear(attribute_tower.dim, cfg.dim) if attribute_tower else None
        )
        self.fusion = GatedFusion(learned=cfg.fusion == "gated")

    def _projection(self, modality: Modality) -> nn.Linear:
        match modality:
            case Modality.TEXT:
                layer = self.text_projection
            case Modality.IMAGE:
                layer = self.image_projection
            case Modality.ATTRIBUTES:
                layer = self.attribute_projection
        if layer is None:
            raise MimrecError(
                f"the {modality.name.lower()} modality is switched off in this encoder"
            )
        return layer

    def project(self, modality: Modality, features: torch.Tensor) -> torch.Tensor:
        """A modality's tower output in the shared space. Shapes: (B, H_m) -> (B, D), unit norm."""
        return F.normalize(self._projection(modality)(features), dim=-1)

    def modality_embeddings(self, outputs: TowerOutputs) -> dict[Modality, torch.Tensor]:
        """Projected embeddings of every switched-on modality. Shapes: each (N, D)."""
        raw = {
            Modality.TEXT: outputs.text,
            Modality.IMAGE: outputs.image,
            Modality.ATTRIBUTES: outputs.attributes,
        }
        return {m: self.project(m, x) for m, x in raw.items() if x is not None}

    def embed(self, outputs: TowerOutputs) -> torch.Tensor:
        """Fused item embeddings from tower outputs. Shapes: -> (N, D), unit norm."""
        per = self.modality_embeddings(outputs)
        n = outputs.present.shape[0]
        zeros = torch.zeros((n, self.cfg.dim))
        stacked = torch.stack([per.get(m, zeros) for m in Modality], dim=1)  # (N, M, D)
        return self.fusion(stacked, outputs.present)

    def text_top_parameters(self, layers: int) -> list[nn.Parameter]:
        """Parameters of the top ``layers`` text layers (empty when the text tower is off or 0)."""
        if self.text_tower is None or layers == 0:
            return []
        return [p for layer in self.text_tower.layers[-layers:] for p in layer.parameters()]

    def image_top_parameters(self, blocks: int) -> list[nn.Parameter]:
        """Parameters of the top ``blocks`` image blocks (see :meth:`ImageTower.top_parameters`)."""
        if self.image_tower is None:
            return []
        return self.image_tower.top_parameters(blocks)

    @torch.inference_mode()
    def tower_outputs(self, items: pd.DataFrame) -> TowerOutputs:
        """Run every switched-on tower over an items table (batched, with a progress bar)."""
        n = len(items)
        present = torch.zeros((n, len(Modality)), dtype=torch.bool)
        with Progress(transient=True, disable=not self.cfg.progress) as bar:
            text = self._text_outputs(items, present, bar)
            image = self._image_outputs(items, present, bar)
            attributes = self._attribute_outputs(items, present)
        return TowerOutputs(text, image, attributes, present)

    def _text_outputs(self, items: pd.DataFrame, present: torch.Tensor, bar: Progress):
        if self.text_tower is None:
            return None
        texts = item_texts(items, self.cfg.text_fields)
        present[:, Modality.TEXT.value] = torch.tensor([t != "" for t in texts], dtype=torch.bool)
        task = bar.add_task("text tower", total=len(texts))
        out = self.text_tower.encode(
            texts, self.cfg.text_batch_size, advance=_advance(bar, task)
        )  # (N, H)
        return out * present[:, Modality.TEXT.value, None]

    def _image_outputs(self, items: pd.DataFrame, present: torch.Tensor, bar: Progress):
        if self.image_tower is None:
            return None
        column = items["image"] if "image" in items.columns else [None] * len(items)
        images = [decode_image(v) for v in column]
        rows = [i for i, img in enumerate(images) if img is not None]
        out = torch.zeros((len(items), self.image_tower.dim))
        task = bar.add_task("image tower", total=len(rows))
        if rows:
            out[rows] = self.image_tower.encode(
                [images[i] for i in rows], self.cfg.image_batch_size, advance=_advance(bar, task)
            )  # (N_img, F)
        present[rows, Modality.IMAGE.value] = True
        return out

    def _attribute_outputs(self, items: pd.DataFrame, present: torch.Tensor):
        if self.attribute_tower is None:
            return None
        column = items["attributes"] if "attributes" in items.columns else [None] * len(items)
        out, has = self.attribute_tower.encode(list(column))  # (N, E), (N,)
        present[:, Modality.ATTRIBUTES.value] = has
        return out

    def encode_items(self, items: pd.DataFrame, allow_empty: bool = False) -> np.ndarray:
        """Fused embeddings of an items table, deterministic (eval mode, no gradients).

        Args:
            items: rows with the configured ``text_fields`` and optional ``image`` and
                ``attributes`` columns.
            allow_empty: an item with none of the switched-on modalities gets the zero vector
                (the catalogue's documented fallback, see :mod:`mimrec.data.content`); when
                False (a request to the service) it is a :class:`MimrecError` naming the item.

        Shapes: N items -> (N, D) float32, rows unit norm (zero for items without content), in
        table order.
        """
        with eval_mode(self), torch.inference_mode():
            outputs = self.tower_outputs(items)
            empty = ~outputs.present.any(dim=1)
            if bool(empty.any()) and not allow_empty:
                row = int(torch.nonzero(empty)[0])
                item = items["item_id"].iloc[row] if "item_id" in items.columns else row
                raise MimrecError(
                    f"item {item!r} has none of the switched-on modalities "
                    "(no text, image or known attribute token): it cannot be embedded"
                )
            present = outputs.present.clone()
            present[empty, 0] = True  # fused as if it had text, then zeroed below
            vectors = self.embed(replace(outputs, present=present))
            vectors[empty] = 0.0  # (N, D)
            return vectors.numpy().astype(np.float32)


def _advance(bar: Progress, task) -> Callable[[int], None]:
    return lambda k: bar.advance(task, k)


@contextmanager
def eval_mode(module: nn.Module):
    """Switch a module to eval mode for a block, then restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def build_item_encoder(cfg: EncoderConfig, vocab: Sequence[str] = ()) -> ItemEncoder:
    """Build an encoder from its config, loading the pretrained tower weights (offline).

    Args:
        cfg: switches, model paths and dimensions.
        vocab: the attribute vocabulary (see :func:`~mimrec.encoders.attributes.build_vocab`);
            required when ``use_attributes`` is on.
    """
    text = load_text_tower(cfg.text_model, cfg.text_max_length) if cfg.use_text else None
    image = (
        load_image_tower(cfg.image_model, cfg.image_arch, cfg.image_resolution)
        if cfg.use_image
        else None
    )
    if cfg.use_attributes and not vocab:
        raise MimrecError(
            "encoder.use_attributes is on but the attribute vocabulary is empty: no "
            f"token occurs in >= {cfg.attribute_min_count} items"
        )
    attributes = AttributeTower(vocab, cfg.attribute_dim) if cfg.use_attributes else None
    return ItemEncoder(cfg, text, image, attributes)
