"""Content-interest modules of CiUBM. Each reads frozen content vectors of the target and the
behaviour items (from the Representation Center); none of them trains the content encoder.

Letters: B batch, L behaviour length, D item ID-vector dim, E content dim, P projected dim.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mimrec.ctr.modules import TargetAttention, one_sequence

# Behaviour positions whose content vectors one step gathers: a longer sequence's cosines are
# computed in slices of this many positions, so their working memory is (B, 128, E) at most.
SIMILARITY_CHUNK = 128
# A batch whose histories name at most this many distinct items per position (U <= 64 L) gets
# its cosines as one (B, E) x (E, U) product over those items (cheaper than gathering B x L
# rows when items repeat, as on a small catalogue; measured in the commit adding it).
DISTINCT_PER_POSITION = 64


class ContentSimilarity(nn.Module):
    """Cosines between the target's and the behaviours' L2-normalised content vectors.

    Computed per batch from the content table: no (N, N) item-item table, so memory follows the
    batch, not the catalogue. When the batch's histories repeat items (U distinct ones, U <= 64
    L), the targets are multiplied with those U vectors once and the cosines gathered; else
    each behaviour's vector is gathered and a long sequence is read in slices of ``chunk``
    positions. Content is frozen, so nothing here is differentiated.

    Shapes: ``content`` (N, E); ``item`` (B,), ``history`` (B, L), ``mask`` (B, L) -> (B, L).
    """

    def __init__(self, chunk: int = SIMILARITY_CHUNK,
                 distinct_per_position: int = DISTINCT_PER_POSITION) -> None:
        super().__init__()
        self.chunk, self.distinct_per_position = chunk, distinct_per_position

    def forward(self, content: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():  # an exported graph has no data-dependent size
            rows = history[:1] if one_sequence(history) else history  # (one user: its row)
            distinct, inverse = torch.unique(rows, return_inverse=True)  # (U,), (B or 1, L)
            if len(distinct) <= self.distinct_per_position * history.shape[1]:
                inverse = inverse.expand_as(history)
                return (content[item] @ content[distinct].T).gather(1, inverse) * mask
        target = content[item].unsqueeze(-1)  # (B, E, 1)
        sims = [torch.bmm(content[history[:, i:i + self.chunk]], target).squeeze(-1)
                for i in range(0, history.shape[1], self.chunk)]  # (B, <= chunk) each
        return torch.cat(sims, dim=1) * mask if len(sims) > 1 else sims[0] * mask


def retrieve_top_k(sims: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` behaviours most similar to the target (GSU), in sequence order.

    Padding ranks last. Shapes: ``sims``, ``mask`` (B, L) -> (B, K) long.
    """
    score = sims.masked_fill(~mask, float("-inf"))
    top = score.topk(k, dim=-1).indices  # (B, K)
    return top.sort(dim=-1).values  # keep recency order (most recent last)


class SimTier(nn.Module):
    """Histogram of target-to-behaviour content similarities over fixed bins, ``log(1 + count)``
    per bin, times learnable per-bin weights (MUSE: width 0.1 over [-1, 1]).

    Shapes: ``sims``, ``mask`` (B, L) -> (B, bins).
    """

    def __init__(self, bins: int = 20) -> None:
        super().__init__()
        self.bins = bins
        self.weight = nn.Parameter(torch.ones(bins))

    def forward(self, sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        index = ((sims + 1) / 2 * self.bins).long().clamp(0, self.bins - 1)  # (B, L)
        counts = torch.zeros(sims.shape[0], self.bins, device=sims.device)
        counts.scatter_add_(1, index, mask.float())
        return torch.log1p(counts) * self.weight


class SimilarityAwareAttention(nn.Module):
    """SA-TA: ID target attention whose scores are fused with content cosines.

    ``a_id = (E Wk)(e_t Wq)^T / sqrt(d)``; ``a = g1 a_id + g2 R + g3 (a_id * R)`` with ``R`` the
    content cosines times a learnable scale and ``g1..g3`` learnable (init 1); the output is
    ``softmax(a)^T (E Wv)`` over valid positions. ``E Wk`` and ``E Wv`` are linear in the item
    vectors, so they are computed once per catalogue row and gathered (:meth:`forward` takes the
    catalogue and the behaviour indices).

    Shapes: ``target`` (B, D), ``catalogue`` (N, D), ``history`` (B, L) indices into it,
    ``sims``, ``mask`` (B, L) -> (B, D).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.gates = nn.Parameter(torch.ones(3))
        self.sim_scale = nn.Parameter(torch.tensor(5.0))

    def project(self, catalogue: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value tables of the catalogue. Shapes: (N, D) -> (N, D), (N, D)."""
        return self.key(catalogue), self.value(catalogue)

    def forward(self, target: torch.Tensor, catalogue: torch.Tensor, history: torch.Tensor,
                sims: torch.Tensor, mask: torch.Tensor,
                tables: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        key_table, value_table = tables if tables is not None else self.project(catalogue)
        shared = one_sequence(history)
        if shared:  # one user's candidates: its L behaviours, gathered once
            keys = key_table.index_select(0, history[0])  # (L, D)
            values = value_table.index_select(0, history[0])  # (L, D)
            a_id = self.query(target) @ keys.T  # (B, L)
        else:  # one index_select per table on the flat indices (no advanced-indexing copies)
            flat = history.reshape(-1)
            keys = key_table.index_select(0, flat).view(*history.shape, -1)  # (B, L, D)
            values = value_table.index_select(0, flat).view(*history.shape, -1)  # (B, L, D)
            a_id = torch.einsum("bld,bd->bl", keys, self.query(target))
        a_id = a_id / math.sqrt(target.shape[-1])  # (B, L)
        r = sims * self.sim_scale
        g1, g2, g3 = self.gates
        scores = (g1 * a_id + g2 * r + g3 * a_id * r).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1).nan_to_num(0.0)  # rows without behaviour -> 0
        if shared:
            return weights @ values  # (B, L) @ (L, D)
        return torch.einsum("bl,bld->bd", weights, values)


class ContentProjection(nn.Linear):
    """Frozen content vectors -> a small trainable space, with dropout on the result (the content
    path's regulariser: an unpenalised projection of every item's content can memorise items).
    A ``Linear`` with the same weight names, so saved models load either way.

    Shapes: (..., E) -> (..., P).
    """

    def __init__(self, content_dim: int, proj_dim: int, dropout: float = 0.0) -> None:
        super().__init__(content_dim, proj_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.dropout(super().forward(content))


class ContentAttention(nn.Module):
    """Target attention in content space: query = projected target content vector, keys =
    projected behaviour content vectors; so a cold item (untrained ID) still gets an interest.

    The projection and the attention's key part are linear, so they are applied to the content
    table once per batch (:meth:`project_table`) and gathered, not recomputed per behaviour.

    Shapes: ``table`` (N, E); ``item`` (B,), ``history`` (B, L), ``mask`` (B, L) -> (B, P).
    """

    def __init__(self, content_dim: int, proj_dim: int, units: tuple[int, ...],
                 softmax: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.projection = ContentProjection(content_dim, proj_dim, dropout)
        self.attention = TargetAttention(proj_dim, units, softmax)

    def project_table(self, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected content table and its attention key part. Shapes: (N, E) -> (N, P), (N, H)."""
        projected = self.projection(table)  # (N, P)
        return projected, self.attention.key_projection(projected)

    def forward(self, table: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
                mask: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        projected, keys = tables if tables is not None else self.project_table(table)
        interest, _ = self.attention(projected[item], projected, mask, key_part=keys,
                                     index=history)
        return interest
