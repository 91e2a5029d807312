"""Cached tower inputs for training only the top of a frozen tower.

A tower is cut at ``cut`` (layers/blocks below it frozen): the frozen bottom runs once over every
text or image and its output is kept; each training step runs only the trainable top on the cached
rows. With nothing trainable the pooled output itself is cached. The cache is exact: the top run on
cached rows equals the whole tower in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from mimrec.encoders.image import ImageTower
from mimrec.encoders.text import TextTower


class TextFeatures:
    """Frozen-bottom token states of a fixed list of texts.

    Args:
        tower: the text tower.
        texts: the texts, indexed by row.
        trainable_layers: top layers that will train (0 = cache the pooled output).
        batch_size: texts per frozen forward pass.
        progress: show a progress bar.

    Shapes: :meth:`pooled` takes rows (B,) and returns (B, H).
    """

    def __init__(
        self,
        tower: TextTower,
        texts: Sequence[str],
        trainable_layers: int,
        batch_size: int = 128,
        progress: bool = False,
    ) -> None:
        self.tower = tower
        self.cut = len(tower.layers) - trainable_layers if trainable_layers else -1
        if trainable_layers > len(tower.layers):
            raise ValueError(
                f"text_trainable_layers={trainable_layers} but the text model has "
                f"{len(tower.layers)} layers"
            )
        self.states: list[torch.Tensor] = []  # each (L_i, H)
        with torch.no_grad(), Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("caching text tower", total=len(texts))
            if self.cut < 0:
                self.cached = tower.encode(texts, batch_size, lambda k: bar.advance(task, k))
            else:
                self._cache_states(texts, batch_size, lambda k: bar.advance(task, k))

    def _cache_states(self, texts: Sequence[str], batch_size: int, advance) -> None:
        tokens = self.tower.tokenize(texts)
        order = np.argsort([-len(t) for t in tokens], kind="stable")
        self.states = [torch.empty(0)] * len(tokens)
        was_training = self.tower.training
        self.tower.eval()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = self.tower.collate([tokens[r] for r in rows])
            hidden = self.tower.hidden_at(ids, mask, self.cut)  # (B, L, H)
            for j, r in enumerate(rows):
                self.states[r] = hidden[j, : len(tokens[r])].clone()
            advance(len(rows))
        self.tower.train(was_training)

    def __len__(self) -> int:
        return len(self.states) if self.cut >= 0 else len(self.cached)

    def pooled(
        self, rows: Sequence[int] | torch.Tensor, state_dropout: float = 0.0
    ) -> torch.Tensor:
        """Pooled tower output of some texts; gradients reach the trainable top layers.

        Args:
            rows: text rows.
            state_dropout: dropout applied to the cached token states entering the top layers
                (stands in for the frozen layers' dropout in SimCSE); 0 in evaluation.
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        if self.cut < 0:
            return self.cached[rows]
        picked = [self.states[r] for r in rows.tolist()]
        longest = max(s.shape[0] for s in picked)
        hidden = torch.zeros((len(picked), longest, picked[0].shape[1]))  # (B, L, H)
        mask = torch.zeros((len(picked), longest), dtype=torch.long)
        for j, s in enumerate(picked):
            hidden[j, : s.shape[0]] = s
            mask[j, : s.shape[0]] = 1
        if state_dropout > 0:
            hidden = F.dropout(hidden, state_dropout, training=True)
        return self.tower.pooled_from(hidden, mask, self.cut)

    @torch.no_grad()
    def all_pooled(self, batch_size: int = 256) -> torch.Tensor:
        """Pooled output of every text in eval mode. Shapes: (N, H)."""
        if self.cut < 0:
            return self.cached.clone()
        was_training = self.tower.training
        self.tower.eval()
        out = torch.cat(
            [
                self.pooled(range(s, min(s + batch_size, len(self))))
                for s in range(0, len(self), batch_size)
            ]
        )
        self.tower.train(was_training)
        return out


class ImageFeatures:
    """Frozen-bottom feature maps of a fixed set of uint8 images.

    Args:
        tower: the image tower.
        images: uint8 images (N, H, W) or (N, H, W, 3), or a list of them.
        trainable_blocks: top blocks that will train (0 = cache the pooled output).
        batch_size: images per frozen forward pass.
        progress: show a progress bar.

    Shapes: :meth:`pooled` takes rows (B,) and returns (B, F).
    """

    def __init__(
        self,
        tower: ImageTower,
        images: Sequence[np.ndarray] | np.ndarray,
        trainable_blocks: int,
        batch_size: int = 256,
        progress: bool = False,
    ) -> None:
        if trainable_blocks > tower.num_blocks:
            raise ValueError(
                f"image_trainable_blocks={trainable_blocks} but the image model has "
                f"{tower.num_blocks} blocks"
            )
        self.tower = tower
        self.cut = tower.num_blocks - trainable_blocks if trainable_blocks else -1
        chunks = []
        with torch.no_grad(), Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("caching image tower", total=len(images))
            for start in range(0, len(images), batch_size):
                pixels = tower.pixels(images[start : start + batch_size])
                chunks.append(
                    tower(pixels) if self.cut < 0 else tower.features_at(pixels, self.cut)
                )
                bar.advance(task, pixels.shape[0])
        self.cached = torch.cat(chunks)  # (N, F) or (N, C, h, w)

    def __len__(self) -> int:
        return self.cached.shape[0]

    def pooled(self, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Pooled tower output of some images; gradients reach the trainable top blocks."""
        picked = self.cached[torch.as_tensor(rows, dtype=torch.long)]
        return picked if self.cut < 0 else self.tower.pooled_from(picked, self.cut)

    @torch.no_grad()
    def all_pooled(self, batch_size: int = 1024) -> torch.Tensor:
        """Pooled output of every image (the tower's current mode). Shapes: (N, F)."""
        return torch.cat(
            [
                self.pooled(range(s, min(s + batch_size, len(self))))
                for s in range(0, len(self), batch_size)
            ]
        )
