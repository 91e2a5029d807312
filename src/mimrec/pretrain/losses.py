"""Contrastive losses of stage 1.

* :func:`info_nce`: symmetric InfoNCE between two aligned batches (row i of ``a`` pairs with row i
  of ``b``); optional ``groups`` mask false negatives: a candidate of the anchor's own group (other
  than its partner) is left out of the softmax. Category-level pairs (Fashion-MNIST image <-> class
  text) set groups = class, so two dresses are never pushed apart.
* :class:`SymmetricInfoNCE`: the same with a learnable temperature (CLIP: init 0.07, 1/T clamped).
* :func:`simcse_loss`: unsupervised SimCSE: two dropout-noised encodings of the same texts are
  positives, the batch's other texts are negatives; fixed temperature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the a->b and b->a cross-entropies over cosine logits times ``scale``.

    Args:
        a: L2-normalised embeddings of one side.
        b: L2-normalised embeddings of the other side; row i is the positive of ``a``'s row i.
        scale: 1 / temperature.
        groups: optional group id per pair; same-group off-diagonal candidates are masked out.

    Shapes: a, b (B, D); groups (B,) -> scalar.
    """
    logits = scale * (a @ b.T)  # (B, B)
    if groups is not None:
        same = groups[:, None] == groups[None, :]  # (B, B)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class SymmetricInfoNCE(nn.Module):
    """CLIP-style symmetric InfoNCE with a learnable temperature.

    Args:
        temperature_init: initial temperature T (logit scale 1/T is learned in log space).
        max_logit_scale: 1/T is clamped to [1, max_logit_scale] in the forward pass.

    Shapes: forward takes a, b (B, D) L2-normalised and optional groups (B,); returns a scalar.
    """

    def __init__(self, temperature_init: float = 0.07, max_logit_scale: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))
        self.max_log_scale = math.log(max_logit_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The clamped logit scale 1 / T."""
        return self.log_scale.clamp(0.0, self.max_log_scale).exp()

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        return info_nce(a, b, self.scale, groups)


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Unsupervised SimCSE loss between two dropout views of the same texts.

    Shapes: z1, z2 (B, H) pooled text vectors (normalised here) -> scalar.
    """
    return info_nce(F.normalize(z1, dim=-1), F.normalize(z2, dim=-1), 1.0 / temperature)
