"""Building blocks of the CTR model: bag embeddings, an MLP, DIN target attention."""

from __future__ import annotations

import torch
from torch import nn


class BagEmbedding(nn.Module):
    """Mean of the embeddings of a bag of indices (index 0 = padding, ignored).

    Shapes: ``index`` (..., M) -> (..., D).
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim, padding_idx=0)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        mask = (index > 0).unsqueeze(-1).float()  # (..., M, 1)
        summed = (self.embedding(index) * mask).sum(-2)
        return summed / mask.sum(-2).clamp(min=1.0)


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> ReLU -> Dropout blocks; the last layer's output is ``out_dim``."""

    def __init__(self, in_dim: int, units: tuple[int, ...], out_dim: int | None = None,
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for u in units:
            layers.append(nn.Linear(in_dim, u))
            if batch_norm:
                layers.append(nn.BatchNorm1d(u))
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            in_dim = u
        if out_dim is not None:
            layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TargetAttention(nn.Module):
    """DIN's local activation unit: an MLP scores each behaviour against the target.

    Args:
        dim: size of target and behaviour vectors.
        units: hidden sizes of the scoring MLP (input [q, k, q - k, q * k]).
        softmax: normalise weights over valid positions; otherwise raw weights (original DIN).

    Shapes: ``query`` (B, D), ``keys`` (B, L, D), ``mask`` (B, L) bool -> (B, D) and weights (B, L).
    """

    def __init__(self, dim: int, units: tuple[int, ...], softmax: bool = False) -> None:
        super().__init__()
        self.score = MLP(4 * dim, units, out_dim=1)
        self.softmax = softmax

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        q = query.unsqueeze(1).expand_as(keys)  # (B, L, D)
        logits = self.score(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)  # (B, L)
        if self.softmax:
            weights = logits.masked_fill(~mask, float("-inf")).softmax(-1).nan_to_num(0.0)
        else:
            weights = logits * mask
        return torch.einsum("bl,bld->bd", weights, keys), weights
