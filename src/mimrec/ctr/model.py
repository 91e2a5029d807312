"""CiUBM: content-interest-aware user behaviour modelling.

The ID backbone is DIN: target attention over the behaviour sequence of item vectors (item id
embedding concatenated with the item's categorical features), user features, and an MLP tower.
Content modules join it when switched on in :class:`~mimrec.ctr.config.ModelConfig`; with all of
them off the model is ID-only DIN, so every ablation is the same class.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mimrec.ctr.config import ModelConfig
from mimrec.ctr.features import FeatureTables
from mimrec.ctr.modules import MLP, BagEmbedding, TargetAttention


class FeatureBag(nn.Module):
    """A categorical feature of items or users: its index table (a buffer) and its embedding.

    Shapes: ``rows`` (...,) indices into the table -> (..., D).
    """

    def __init__(self, index: np.ndarray, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
        self.embedding = BagEmbedding(num_embeddings, dim)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.index[rows])


class CiUBM(nn.Module):
    """The CTR model. Inputs are index tensors; output is one logit per sample.

    Args:
        cfg: the model's shape and switches.
        tables: item and user feature tables (index space: 0 = padding / unknown).

    Shapes: ``user`` (B,), ``item`` (B,), ``history`` (B, L) with 0 = padding -> logits (B,).
    """

    def __init__(self, cfg: ModelConfig, tables: FeatureTables) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.item_id_embedding = (nn.Embedding(tables.num_items + 1, d, padding_idx=0)
                                  if cfg.use_item_id else None)
        self.item_features = nn.ModuleList(
            FeatureBag(b.index, b.num_embeddings, d) for b in tables.items)
        self.user_id_embedding = (nn.Embedding(tables.num_users + 1, d, padding_idx=0)
                                  if cfg.use_user_id else None)
        self.user_features = nn.ModuleList(
            FeatureBag(b.index, b.num_embeddings, d) for b in tables.users)
        item_dim = d * (cfg.use_item_id + len(tables.items))
        user_dim = d * (cfg.use_user_id + len(tables.users))
        self.target_attention = TargetAttention(item_dim, cfg.attention_units, cfg.attention_softmax)
        self.tower = MLP(user_dim + 2 * item_dim, cfg.mlp_units, out_dim=1, dropout=cfg.dropout,
                         batch_norm=cfg.batch_norm)
        self.register_buffer("all_items", torch.arange(tables.num_items + 1), persistent=False)
        self._reset_embeddings()

    def _reset_embeddings(self) -> None:
        for emb in self.embeddings():
            nn.init.normal_(emb.weight, std=1e-4)
            with torch.no_grad():
                emb.weight[0].zero_()

    def embeddings(self) -> list[nn.Embedding]:
        """Every embedding table (the ones the embedding L2 penalty applies to)."""
        return [m for m in self.modules() if isinstance(m, nn.Embedding)]

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """ID + categorical features of items. Shapes: (...,) -> (..., item_dim)."""
        parts = [bag(items) for bag in self.item_features]
        if self.item_id_embedding is not None:
            parts.insert(0, self.item_id_embedding(items))
        return torch.cat(parts, dim=-1)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """ID + side features of users. Shapes: (B,) -> (B, user_dim)."""
        parts = [bag(users) for bag in self.user_features]
        if self.user_id_embedding is not None:
            parts.insert(0, self.user_id_embedding(users))
        if not parts:
            return users.new_zeros((*users.shape, 0), dtype=torch.float32)
        return torch.cat(parts, dim=-1)

    def forward(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor
                ) -> torch.Tensor:
        history = trim_padding(history)
        catalogue = self.item_vectors(self.all_items)  # (I + 1, item_dim), computed once per batch
        catalogue_keys = self.target_attention.key_projection(catalogue)  # (I + 1, H)
        target = catalogue[item]  # (B, item_dim)
        behaviour = catalogue[history]  # (B, L, item_dim)
        interest, _ = self.target_attention(target, behaviour, history > 0,
                                            key_part=catalogue_keys[history])  # (B, item_dim)
        features = torch.cat([self.user_vectors(user), target, interest], dim=-1)
        return self.tower(features).squeeze(-1)  # (B,)


def trim_padding(history: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row (histories are left-padded).

    Shapes: (B, L) -> (B, L') with L' <= L, at least 1.
    """
    filled = (history > 0).any(0)
    if not filled.any():
        return history[:, -1:]
    return history[:, int(filled.nonzero()[0]):]
