"""The ID block of the CTR model: item and user vectors from ID embeddings and categorical
features, the cold ID (content-generated ID embeddings of items training never saw) and target
item-ID dropout.

Index spaces: model item indices are catalogue rows + 1 (0 = padding); rows past the ID tables
are items added after training, whose ID part reads as unknown (0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mimrec.ctr.features import FeatureTables
from mimrec.ctr.modules import BagEmbedding, take_rows


class FeatureBag(nn.Module):
    """A categorical feature of items or users: its index table (a buffer) and its embedding.

    Shapes: ``rows`` (...,) indices into the table -> (..., D).
    """

    def __init__(self, index: np.ndarray, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
        self.embedding = BagEmbedding(num_embeddings, dim)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.embedding(take_rows(self.index, rows))


class ColdId(nn.Module):
    """Content-generated ID embeddings that an item's own ID embedding takes over from as its
    train count grows (meta warm-up / generated embeddings).

    ``id + gate * k / (k + n) * map(content)`` (or, with ``replace``, ``id + gate * k / (k + n) *
    (map(content) - id)``, a blend that hands a rarely trained ID over to content) with ``n`` the
    item's train impressions, ``k`` =
    ``halfway`` (the count at which both weigh the same) and ``gate`` a learned scalar that starts
    at 0: at initialisation every item vector is its ID model's, and the content part grows only
    as far as the CTR loss asks. A cold item (n = 0) or one added after training (its own ID is
    the zero padding row) gets the whole generated part. The map is fitted by
    :meth:`auxiliary_loss` (squared error against the trained items' detached ID embeddings, so
    fitting it never moves them).

    Shapes: ``content`` (..., E) -> (..., D).
    """

    def __init__(self, content_dim: int, dim: int, num_items: int, halfway: float,
                 replace: bool = False) -> None:
        super().__init__()
        self.map = nn.Linear(content_dim, dim)
        self.gate = nn.Parameter(torch.zeros(()))
        self.halfway, self.replace = halfway, replace
        # train impressions per item (see mark_trained); an integer buffer, so a weight
        # average copies it instead of averaging it
        self.register_buffer("train_count", torch.zeros(num_items + 1, dtype=torch.long))

    def mark_trained(self, items: torch.Tensor) -> None:
        counts = torch.bincount(items.cpu(), minlength=self.train_count.shape[0])
        self.train_count.copy_(counts[: self.train_count.shape[0]])

    def fill(self, id_vectors: torch.Tensor, ids: torch.Tensor, items: torch.Tensor,
             content: torch.Tensor) -> torch.Tensor:
        """ID vectors plus the weighted generated part. ``ids`` are the ID-table indices of
        ``items`` (0 past the tables: an added item, weight 1). Shapes: (..., D), (...,), (...,)
        -> (..., D)."""
        count = torch.where(ids == items, self.train_count[ids], 0).float()  # (...,)
        weight = torch.where(items > 0, self.halfway / (self.halfway + count), 0.0)  # padding: 0
        generated = self.map(content[items])
        if self.replace:  # move towards the generated vector instead of adding it
            generated = generated - id_vectors
        return id_vectors + self.gate * weight.unsqueeze(-1) * generated

    def auxiliary_loss(self, id_vectors: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """Squared error of the map on a batch's target items. Shapes: (B, D), (B, E) -> ()."""
        return (self.map(content) - id_vectors.detach()).pow(2).sum(-1).mean()


class ItemVectors(nn.Module):
    """Item ID embedding + categorical feature bags (+ the cold ID when attached).

    Shapes: model item indices (...,) -> (..., out_dim).
    """

    def __init__(self, tables: FeatureTables, dim: int, item_id: bool,
                 id_dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.id_dropout, self.num_ids = dim, id_dropout, tables.num_items
        self.id_embedding = nn.Embedding(tables.num_items + 1, dim, padding_idx=0) if item_id else None
        self.features = nn.ModuleList(
            FeatureBag(b.index, b.num_embeddings, dim) for b in tables.items)
        self.cold_id: ColdId | None = None
        self.out_dim = dim * (item_id + len(tables.items))

    def id_index(self, items: torch.Tensor) -> torch.Tensor:
        """Indices into the ID tables: items added after training read as unknown (0)."""
        return torch.where(items <= self.num_ids, items, torch.zeros_like(items))

    def extend_features(self, rows: list[np.ndarray]) -> None:
        """Give items added after training their categorical features: ``rows[k]`` is an
        (A, M_k) matrix of bag ``k``'s vocabulary indices (0 = no value) for model indices
        ``num_ids + 1 ..`` in order. Replaces any earlier extension; training rows stay."""
        for bag, extra in zip(self.features, rows, strict=True):
            trained = bag.index[: self.num_ids + 1]  # (1 + I, M)
            extra = torch.as_tensor(extra, dtype=torch.long, device=trained.device)
            bag.index = torch.cat([trained, extra.reshape(-1, trained.shape[1])])

    def feature_rows(self, items: torch.Tensor, bag: FeatureBag) -> torch.Tensor:
        """Rows of a feature table: items past it (added, no features given) read as 0."""
        return torch.where(items < bag.index.shape[0], items, torch.zeros_like(items))

    def forward(self, items: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        ids = self.id_index(items)
        parts = [bag(self.feature_rows(items, bag)) for bag in self.features]
        if self.id_embedding is not None:
            id_vectors = self.id_embedding(ids)
            if self.cold_id is not None:
                id_vectors = self.cold_id.fill(id_vectors, ids, items, content)
            parts.insert(0, id_vectors)
        return torch.cat(parts, dim=-1)

    def cold_ids(self, items: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """The ID part of ``items`` as if training had never seen them: the cold ID's
        content-generated embedding (weight 1, no own ID), or zeros without the cold ID.
        Shapes: (B,) -> (B, D)."""
        zeros = torch.zeros(*items.shape, self.dim, device=items.device)
        if self.cold_id is None:
            return zeros
        return self.cold_id.fill(zeros, torch.zeros_like(items), items, content)

    def drop_target_ids(self, target: torch.Tensor) -> torch.Tensor:
        """In training, zero the item-ID part (the first ``dim`` columns) of a random
        ``id_dropout`` share of the target rows. Shapes: (B, D) -> (B, D)."""
        if not self.training or self.id_dropout <= 0 or self.id_embedding is None:
            return target
        keep = (torch.rand(target.shape[0], 1, device=target.device)
                >= self.id_dropout).to(target.dtype)
        return torch.cat([target[:, :self.dim] * keep, target[:, self.dim:]], dim=-1)

    def auxiliary_loss(self, item: torch.Tensor, content: torch.Tensor) -> torch.Tensor | None:
        """The cold ID's regression on the batch's target items (None without it)."""
        if self.cold_id is None:
            return None
        return self.cold_id.auxiliary_loss(self.id_embedding(self.id_index(item)), content[item])


class UserVectors(nn.Module):
    """User ID embedding + side-feature bags. Shapes: (B,) -> (B, out_dim).

    ``features``, one entry per user feature bag, overrides the stored side features with
    explicit vocabulary indices (B, M) where an entry is not None (a scoring request that states
    the user's age, say); None entries read the user's row.
    """

    def __init__(self, tables: FeatureTables, dim: int, user_id: bool) -> None:
        super().__init__()
        self.id_embedding = nn.Embedding(tables.num_users + 1, dim, padding_idx=0) if user_id else None
        self.features = nn.ModuleList(
            FeatureBag(b.index, b.num_embeddings, dim) for b in tables.users)
        self.out_dim = dim * (user_id + len(tables.users))

    def forward(self, users: torch.Tensor,
                features: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        features = features or [None] * len(self.features)
        parts = [bag(users) if explicit is None else bag.embedding(explicit)
                 for bag, explicit in zip(self.features, features, strict=True)]
        if self.id_embedding is not None:
            parts.insert(0, self.id_embedding(users))
        if not parts:
            return users.new_zeros((*users.shape, 0), dtype=torch.float32)
        return torch.cat(parts, dim=-1)
