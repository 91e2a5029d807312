"""Fusion of per-modality item embeddings into one, over the modalities each item has."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn


class Modality(Enum):
    """The content modalities, in the fixed order of the fusion weights."""

    TEXT = 0
    IMAGE = 1
    ATTRIBUTES = 2


class GatedFusion(nn.Module):
    """Weighted sum of L2-normalised modality embeddings, weights = softmax over present modalities.

    There is one learned logit per modality (all modalities, whether switched on or not, so weights
    of encoders with different switches line up). A modality an item lacks, or that is switched off,
    is masked out of the softmax: an item without an image is embedded from what it has, exactly as
    by an encoder whose image tower is off. The result is L2-normalised.

    Args:
        learned: learn the logits (``gated``); False keeps them at zero (plain mean).

    Shapes: forward takes embeddings (B, M, D) and present (B, M) bool and returns (B, D).
    """

    def __init__(self, learned: bool = True) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(len(Modality)), requires_grad=learned)

    def weights(self, present: torch.Tensor) -> torch.Tensor:
        """Fusion weights per item. Shapes: present (B, M) bool -> (B, M), rows sum to 1."""
        logits = self.logits.expand(present.shape[0], -1).masked_fill(~present, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def forward(self, embeddings: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if not bool(present.any(dim=1).all()):
            raise ValueError("every item needs at least one present modality to be fused")
        w = self.weights(present)  # (B, M)
        emb = torch.nan_to_num(embeddings) * present.unsqueeze(-1)  # absent rows may hold anything
        return F.normalize((w.unsqueeze(-1) * emb).sum(1), dim=-1)  # (B, D)
