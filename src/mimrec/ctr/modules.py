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

    The first layer of the scoring MLP reads ``[q, k, q - k, q * k]``; it is computed in its
    algebraically equal split form ``q (Wq + Wd) + k (Wk - Wd) + (q * k) Wp``, so the query part is
    computed once per sample instead of once per behaviour, and a key part can be passed in
    precomputed per catalogue item (:meth:`key_projection`).

    Args:
        dim: size of target and behaviour vectors.
        units: hidden sizes of the scoring MLP (at least one).
        softmax: normalise weights over valid positions; otherwise raw weights (original DIN).

    Shapes: ``query`` (B, D), ``keys`` (B, L, D), ``mask`` (B, L) bool -> (B, D) and weights (B, L).
    """

    def __init__(self, dim: int, units: tuple[int, ...], softmax: bool = False) -> None:
        super().__init__()
        if not units:
            raise ValueError("attention_units needs at least one hidden layer")
        self.dim = dim
        self.first = nn.Linear(4 * dim, units[0])
        self.rest = MLP(units[0], units[1:], out_dim=1)
        self.softmax = softmax

    def _blocks(self) -> tuple[torch.Tensor, ...]:
        return self.first.weight.split(self.dim, dim=1)  # 4 x (H, D)

    def key_projection(self, keys: torch.Tensor) -> torch.Tensor:
        """The key-only part of the first layer. Shapes: (..., D) -> (..., H)."""
        _, wk, wd, _ = self._blocks()
        return keys @ (wk - wd).T

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
                key_part: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        wq, _, wd, wp = self._blocks()
        if key_part is None:
            key_part = self.key_projection(keys)  # (B, L, H)
        q_part = query @ (wq + wd).T + self.first.bias  # (B, H)
        hidden = q_part.unsqueeze(1) + key_part + (query.unsqueeze(1) * keys) @ wp.T  # (B, L, H)
        logits = self.rest(torch.relu(hidden)).squeeze(-1)  # (B, L)
        if self.softmax:
            weights = logits.masked_fill(~mask, float("-inf")).softmax(-1).nan_to_num(0.0)
        else:
            weights = logits * mask
        return torch.einsum("bl,bld->bd", weights, keys), weights
