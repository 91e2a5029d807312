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
from mimrec.ctr.content import (
    ContentAttention,
    ContentProjection,
    ContentSimilarity,
    SimilarityAwareAttention,
    SimTier,
    retrieve_top_k,
)
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

    def __init__(self, cfg: ModelConfig, tables: FeatureTables,
                 content: torch.Tensor | None = None) -> None:
        super().__init__()
        self._tables: dict | None = None  # inference cache of catalogue_tables()
        if cfg.uses_content and content is None:
            raise ValueError("this model config switches content modules on: pass content vectors")
        self.cfg = cfg
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
        self.target_attention = (TargetAttention(item_dim, cfg.attention_units,
                                                 cfg.attention_softmax)
                                 if cfg.id_attention else None)
        self.num_id_items = tables.num_items
        self.register_buffer("all_items", torch.arange(tables.num_items + 1), persistent=False)
        self.register_buffer("content", torch.zeros(0, 0), persistent=False)
        self.similarity = ContentSimilarity()
        content_dim = 0
        if content is not None and cfg.uses_content:
            self.set_content(content)
            content_dim = self.content.shape[1]
        p = cfg.content_proj_dim
        self.sa_ta = SimilarityAwareAttention(item_dim) if cfg.sa_ta else None
        self.simtier = SimTier(cfg.simtier_bins) if cfg.simtier else None
        self.content_attention = (ContentAttention(content_dim, p, cfg.attention_units,
                                                   cfg.attention_softmax, cfg.content_dropout)
                                  if cfg.content_attention else None)
        self.target_content = (ContentProjection(content_dim, p, cfg.content_dropout)
                               if cfg.target_content else None)
        self.content_id = (nn.Linear(content_dim, d)
                           if cfg.cold_id and self.item_id_embedding is not None else None)
        if self.content_id is not None:  # which ID embeddings training updates (see mark_trained)
            self.register_buffer("id_trained", torch.ones(tables.num_items + 1, dtype=torch.bool))
        tower_in = (user_dim + item_dim * (1 + cfg.id_attention + cfg.sa_ta)
                    + cfg.simtier_bins * cfg.simtier
                    + p * (cfg.content_attention + cfg.target_content))
        self.tower = MLP(tower_in, cfg.mlp_units, out_dim=1, dropout=cfg.dropout,
                         batch_norm=cfg.batch_norm)
        self._reset_embeddings()

    def set_content(self, content: torch.Tensor) -> None:
        """Frozen content vectors by model item index (row 0 = padding, rows past the ID tables
        = items added after training). Rows are L2-normalised here. Shapes: (N + 1, E)."""
        content = torch.nn.functional.normalize(torch.as_tensor(content, dtype=torch.float32),
                                                dim=-1)
        self.content = content.to(self.all_items.device)
        self.similarity.set_content(self.content)
        # the catalogue spans every content row: items added after training included
        self.all_items = torch.arange(max(self.num_id_items + 1, self.content.shape[0]),
                                      device=self.content.device)
        self.clear_cache()

    def mark_trained(self, items: torch.Tensor) -> None:
        """Record the items training updates the ID embedding of (the train targets, model
        indices); with ``cold_id`` every other item's ID embedding is generated from content."""
        if self.content_id is None:
            return
        trained = torch.zeros_like(self.id_trained)
        trained[items.to(trained.device)] = True
        trained[0] = True  # padding keeps its zero vector
        self.id_trained.copy_(trained)
        self.clear_cache()

    def _reset_embeddings(self) -> None:
        for emb in self.embeddings():
            nn.init.normal_(emb.weight, std=1e-4)
            with torch.no_grad():
                emb.weight[0].zero_()

    def embeddings(self) -> list[nn.Embedding]:
        """Every embedding table (the ones the embedding L2 penalty applies to)."""
        return [m for m in self.modules() if isinstance(m, nn.Embedding)]

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """ID + categorical features of items; indices past the ID tables read as unknown (0).

        Shapes: (...,) -> (..., item_dim).
        """
        ids = self.id_index(items)
        parts = [bag(ids) for bag in self.item_features]
        if self.item_id_embedding is not None:
            parts.insert(0, self.item_id_embedding(ids))
            if self.content_id is not None:
                known = self.id_trained[ids] & (ids == items)  # (...,)
                generated = self.content_id(self.content[items])  # (..., d)
                parts[0] = torch.where(known.unsqueeze(-1), parts[0], generated)
        return torch.cat(parts, dim=-1)

    def catalogue_index(self, items: torch.Tensor) -> torch.Tensor:
        """Item indices into :meth:`catalogue_tables` rows: items past them read as unknown (0)."""
        n = self.all_items.shape[0]
        return torch.where(items < n, items, torch.zeros_like(items))

    def auxiliary_loss(self, item: torch.Tensor) -> torch.Tensor | float:
        """With ``cold_id``: the squared error of the content -> ID-embedding map on the batch's
        target items, against their (detached) trained ID embeddings, so fitting the map never
        moves them. Added to the CTR loss in training; 0 otherwise. Shapes: (B,) -> ()."""
        if self.content_id is None:
            return 0.0
        trained = self.item_id_embedding(self.id_index(item)).detach()  # (B, d)
        return (self.content_id(self.content[item]) - trained).pow(2).sum(-1).mean()

    def id_index(self, items: torch.Tensor) -> torch.Tensor:
        """Item indices for the ID tables: items added after training read as unknown (0)."""
        return torch.where(items <= self.num_id_items, items, torch.zeros_like(items))

    def user_vectors(self, users: torch.Tensor,
                     features: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """ID + side features of users. Shapes: (B,) -> (B, user_dim).

        ``features``, one entry per user feature bag, overrides the stored side features with
        explicit vocabulary indices (B, M) where an entry is not None (a scoring request that
        states the user's age, say); None entries read the user's row.
        """
        features = features or [None] * len(self.user_features)
        parts = [bag(users) if explicit is None else bag.embedding(explicit)
                 for bag, explicit in zip(self.user_features, features, strict=True)]
        if self.user_id_embedding is not None:
            parts.insert(0, self.user_id_embedding(users))
        if not parts:
            return users.new_zeros((*users.shape, 0), dtype=torch.float32)
        return torch.cat(parts, dim=-1)

    def forward(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
                user_features: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        history = trim_padding(history)
        sims = None
        if self.cfg.uses_content:
            history, sims = self._retrieve(item, history)
        mask = history > 0
        tables = self.catalogue_tables()
        catalogue = tables["catalogue"]  # (I + 1, D)
        item_ids, history_ids = self.catalogue_index(item), self.catalogue_index(history)
        target = catalogue[item_ids]  # (B, D); behaviours are read from the catalogue rows
        if self.training and self.cfg.item_id_dropout > 0 and self.item_id_embedding is not None:
            target = self._drop_target_id(target)
        parts = [self.user_vectors(user, user_features), target]
        if self.target_attention is not None:
            parts.append(self.target_attention(target, catalogue, mask, index=history_ids,
                                               key_part=tables["id_keys"])[0])
        if self.sa_ta is not None:
            parts.append(self.sa_ta(target, catalogue, history_ids, sims, mask,
                                    tables=tables["sa_ta"]))
        if self.simtier is not None:
            parts.append(self.simtier(sims, mask))
        if self.content_attention is not None:
            parts.append(self.content_attention(self.content, item, history, mask,
                                                tables=tables["content"]))
        if self.target_content is not None:
            parts.append(self.target_content(self.content[item]))
        return self.tower(torch.cat(parts, dim=-1)).squeeze(-1)  # (B,)

    def _drop_target_id(self, target: torch.Tensor) -> torch.Tensor:
        """Zero the item-ID part (the first ``embedding_dim`` columns) of a random
        ``item_id_dropout`` share of the target rows. Shapes: (B, D) -> (B, D)."""
        d = self.cfg.embedding_dim
        keep = (torch.rand(target.shape[0], 1, device=target.device)
                >= self.cfg.item_id_dropout).to(target.dtype)
        return torch.cat([target[:, :d] * keep, target[:, d:]], dim=-1)

    def catalogue_tables(self) -> dict:
        """Per-catalogue-item tensors every sample reads: item vectors and the linear parts of
        the attentions (computed once per batch, gathered per behaviour). In inference (eval mode,
        no autograd) they depend only on frozen weights and content, so they are kept until
        :meth:`train`, :meth:`load_state_dict` or :meth:`set_content` (a scoring service
        computes them once, not once per request). After editing weights by hand in eval mode,
        call :meth:`clear_cache`.
        """
        frozen = not self.training and not torch.is_grad_enabled()
        if frozen and self._tables is not None:
            return self._tables
        catalogue = self.item_vectors(self.all_items)  # (I + 1, D)
        tables = {
            "catalogue": catalogue,
            "id_keys": (self.target_attention.key_projection(catalogue)
                        if self.target_attention is not None else None),
            "sa_ta": self.sa_ta.project(catalogue) if self.sa_ta is not None else None,
            "content": (self.content_attention.project_table(self.content)
                        if self.content_attention is not None else None),
        }
        if frozen:
            self._tables = tables
        return tables

    def clear_cache(self) -> None:
        """Forget the inference cache of :meth:`catalogue_tables`."""
        self._tables = None

    def train(self, mode: bool = True) -> CiUBM:
        self.clear_cache()
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self.clear_cache()
        return super().load_state_dict(*args, **kwargs)

    def _retrieve(self, item: torch.Tensor, history: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Content cosines of each behaviour to the target; with ``retrieval_k``, only the top-K
        behaviours are kept (GSU). Shapes: (B,), (B, L) -> (B, L'), (B, L')."""
        mask = history > 0
        sims = self.similarity(self.content, item, history, mask)  # (B, L)
        k = self.cfg.retrieval_k
        if 0 < k < history.shape[1]:
            keep = retrieve_top_k(sims, mask, k)  # (B, K)
            history, sims = history.gather(1, keep), sims.gather(1, keep)
        return history, sims


def trim_padding(history: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row (histories are left-padded).

    Shapes: (B, L) -> (B, L') with L' <= L, at least 1.
    """
    filled = (history > 0).any(0)
    if not filled.any():
        return history[:, -1:]
    return history[:, int(filled.nonzero()[0]):]
