"""CiUBM: content-interest-aware user behaviour modelling, composed from blocks.

An ID block (:class:`~mimrec.ctr.ids.ItemVectors`, :class:`~mimrec.ctr.ids.UserVectors`: ID
embeddings, categorical features, the cold ID), an optional sequence pre-step (content cosines
and GSU top-K), a list of interest blocks that share one :class:`~mimrec.ctr.blocks.Behaviours`
context and declare their output width, and two towers:

- the ID tower over ``[user, target, outputs of the blocks that read no content]``: this is DIN;
- the content residual over the outputs of the content blocks only (what it adds is content's
  doing, not more capacity on ID features), whose last layer starts at zero and whose logit is
  added to the ID tower's.

So a content model starts as exactly its ID model (the cold ID's gate starts at 0 too) and can
only add what training finds: ``logit = din(x) + residual(x, content)``. Started from a trained
DIN (``ModelSpec.init_from``), the ID parts are frozen and only the content parts learn.
ID-only DIN is the block list ``[id_attention]``; CiUBM adds content blocks (:class:`ModelSpec`).
"""

from __future__ import annotations

import torch
from torch import nn

from mimrec.ctr.blocks import (
    Behaviours,
    BlockDims,
    CatalogueTables,
    block_class,
    block_name,
    reads_content,
    reads_similarities,
)
from mimrec.ctr.config import ModelConfig, ModelSpec
from mimrec.ctr.content import ContentSimilarity, retrieve_top_k
from mimrec.ctr.features import FeatureTables
from mimrec.ctr.ids import ColdId, ItemVectors, UserVectors
from mimrec.ctr.modules import MLP, one_sequence, take_rows


class CiUBM(nn.Module):
    """The CTR model. Inputs are index tensors; output is one logit per sample.

    Args:
        cfg: the shape shared by a run's models.
        spec: what this model is made of (blocks, ID parts, GSU).
        tables: item and user feature tables (index space: 0 = padding / unknown).
        content: frozen content vectors by model item index, when the spec reads content.

    Shapes: ``user`` (B,), ``item`` (B,), ``history`` (B, L) with 0 = padding -> logits (B,).
    """

    def __init__(self, cfg: ModelConfig, spec: ModelSpec, tables: FeatureTables,
                 content: torch.Tensor | None = None) -> None:
        super().__init__()
        if reads_content(spec) and content is None:
            raise ValueError(f"model {spec.name!r} reads content vectors: pass them")
        self.cfg, self.spec = cfg, spec
        self.trim_history = True  # off for a static graph (ONNX export)
        self.batch_tables = False  # see use_sparse_gradients
        d = cfg.embedding_dim
        self.items = ItemVectors(tables, d, spec.item_id, cfg.item_id_dropout)
        self.users = UserVectors(tables, d, spec.user_id)
        self.num_id_items = tables.num_items
        self.register_buffer("all_items", torch.arange(tables.num_items + 1), persistent=False)
        self.register_buffer("content", torch.zeros(0, 0), persistent=False)
        # train impressions per model item index, for cold dropout's ``rare`` weight (see
        # mark_trained); not saved: only training reads it
        self.register_buffer("train_count", torch.zeros(0, dtype=torch.long), persistent=False)
        self.similarity = ContentSimilarity()
        self.retrieval_k = spec.retrieval_k
        self.needs_similarities = reads_similarities(spec)
        if content is not None and reads_content(spec):
            self.set_content(content)
        dims = BlockDims(self.items.out_dim, self.content.shape[1], tables.num_users)
        self.blocks = nn.ModuleDict({block_name(kind): block_class(kind).build(dims, cfg)
                                     for kind in spec.blocks})
        if spec.cold_id and spec.item_id:
            # built after the blocks: a seed draws the same initial weights as before the
            # model was composed from blocks (tests/ctr/test_golden.py)
            self.items.cold_id = ColdId(dims.content_dim, d, tables.num_items,
                                        cfg.cold_id_halfway, cfg.cold_id_blend == "replace")
        id_in = (self.users.out_dim + self.items.out_dim
                 + sum(b.out_dim for b in self.blocks.values() if not b.reads_content))
        self.tower = MLP(id_in, cfg.mlp_units, out_dim=1, dropout=cfg.dropout,
                         batch_norm=cfg.batch_norm)
        content_in = sum(b.out_dim for b in self.blocks.values() if b.reads_content)
        self.residual = ContentResidual(content_in, cfg.residual_units,
                                        cfg.dropout) if content_in else None
        self._reset_embeddings()

    def set_content(self, content: torch.Tensor, in_place: bool = False) -> None:
        """Frozen content vectors by model item index (row 0 = padding, rows past the ID tables
        = items added after training). Rows are L2-normalised here; with ``in_place`` (a float32
        tensor the caller gives up) into ``content`` itself, the same values without a second
        catalogue-sized copy. Shapes: (N + 1, E)."""
        content = torch.as_tensor(content, dtype=torch.float32)
        content = torch.nn.functional.normalize(content, dim=-1,
                                                out=content if in_place else None)
        self.content = content.to(self.all_items.device)
        # the catalogue spans every content row: items added after training included
        self.all_items = torch.arange(max(self.num_id_items + 1, self.content.shape[0]),
                                      device=self.content.device)

    def mark_trained(self, items: torch.Tensor) -> None:
        """Record the items training updates the ID embedding of (the train targets, model
        indices); with the cold ID every other item's ID embedding is generated from content."""
        if self.items.cold_id is not None:
            self.items.cold_id.mark_trained(items)
        self.train_count = torch.bincount(items.cpu(), minlength=self.num_id_items + 1).to(
            self.all_items.device)

    def _reset_embeddings(self) -> None:
        for emb in self.embeddings():
            nn.init.normal_(emb.weight, std=1e-4)
            with torch.no_grad():
                emb.weight[0].zero_()

    def embeddings(self) -> list[nn.Embedding]:
        """Every embedding table (the ones the embedding L2 penalty applies to)."""
        return [m for m in self.modules() if isinstance(m, nn.Embedding)]

    def auxiliary_losses(self, item: torch.Tensor) -> list[torch.Tensor]:
        """The model's own training terms on a batch's target items (the cold ID's regression).
        Shapes: (B,) -> a list of scalars."""
        loss = self.items.auxiliary_loss(item, self.content)
        return [] if loss is None else [loss]

    def catalogue_index(self, items: torch.Tensor) -> torch.Tensor:
        """Model item indices as catalogue rows: items past them read as unknown (0)."""
        n = self.all_items.shape[0]
        return torch.where(items < n, items, torch.zeros_like(items))

    def catalogue_tables(self, rows: torch.Tensor | None = None) -> CatalogueTables:
        """The per-catalogue tensors of the current weights (item vectors, each block's
        precomputed part). Inference computes them once and passes them to :meth:`forward`.
        With ``rows`` (sorted catalogue rows, 0 first), the tables of those rows only."""
        items, content = self.all_items, self.content
        if rows is not None:
            items, content = rows, (content[rows] if content.numel() else content)
        tables = CatalogueTables(self.items(items, self.content), content)
        for name, block in self.blocks.items():
            tables.prepared[name] = block.prepare(tables)
        return tables

    def use_sparse_gradients(self) -> list[nn.Embedding]:
        """Train so that a step touches only what its batch uses (``ctr.train.sparse_updates``):
        the trained embedding tables give sparse gradients, and a training forward builds the
        catalogue tables of the batch's items only (:meth:`catalogue_tables` with ``rows``)
        instead of the whole catalogue's. Returns the sparse tables."""
        self.batch_tables = True
        tables = [e for e in self.embeddings() if e.weight.requires_grad]
        for table in tables:
            table.sparse = True
        return tables

    def forward(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
                user_features: list[torch.Tensor | None] | None = None,
                tables: CatalogueTables | None = None) -> torch.Tensor:
        """Logits. ``tables``: :meth:`catalogue_tables` computed once for frozen weights
        (inference); computed here when None (training)."""
        if self.trim_history:  # a speed-up only: padding never changes a logit
            history = trim_padding(history)
        # one user's candidates (an expanded history): per-sequence work is done once, on row 0
        item = self.catalogue_index(item)
        history = (self.catalogue_index(history[:1]).expand_as(history)
                   if one_sequence(history) else self.catalogue_index(history))
        history, sims = self._sequence(item, history)
        shared = one_sequence(history)  # (still, unless the retrieval step picked per row)
        local_item, local_history = item, history
        if tables is None and self.batch_tables:  # the batch's rows only, 0 (padding) first
            named = history[:1] if shared else history
            rows, local = torch.unique(torch.cat([item.new_zeros(1), item, named.flatten()]),
                                       return_inverse=True)
            tables = self.catalogue_tables(rows)
            local_item = local[1:1 + len(item)]
            local_history = local[1 + len(item):].view_as(named).expand_as(history)
        tables = tables if tables is not None else self.catalogue_tables()
        target = self.items.drop_target_ids(take_rows(tables.vectors, local_item))  # (B, D)
        if self.training and self.spec.cold_dropout > 0:
            target = self._show_cold(target, item)
        mask = (history[:1] > 0).expand_as(history) if shared else history > 0  # (B, L)
        ctx = Behaviours(target, local_item, local_history, mask, sims, tables, user)
        id_parts, content_parts = [self.users(user, user_features), target], []
        for name, block in self.blocks.items():
            out = block(ctx, tables.prepared[name])  # (B, out_dim)
            (content_parts if block.reads_content else id_parts).append(out)
        id_input = torch.cat(id_parts, dim=-1)
        logit = self.tower(id_input).squeeze(-1)  # (B,)
        if self.residual is not None:
            logit = logit + self.residual(torch.cat(content_parts, dim=-1))
        return logit

    def start_from(self, state: dict[str, torch.Tensor]) -> None:
        """Start from a trained ID model's weights (``ModelSpec.init_from``) and freeze them:
        every tensor of ``state`` this model has is copied and no longer trained, and the ID
        tower stays in eval mode (its batch-norm statistics and dropout as trained), so training
        moves only the content parts. ``state`` must not hold content parts."""
        own = self.state_dict()
        foreign = sorted(k for k in state if k not in own)
        if foreign:
            raise ValueError(f"the start weights hold tensors this model lacks: {foreign[:3]}")
        self.load_state_dict(state, strict=False)
        for name, p in self.named_parameters():
            p.requires_grad_(name not in state)
        self.train(self.training)

    def train(self, mode: bool = True) -> CiUBM:
        """As ``nn.Module.train``; a frozen ID tower (see :meth:`start_from`) stays in eval mode."""
        super().train(mode)
        if not any(p.requires_grad for p in self.tower.parameters()):
            self.tower.eval()
        return self

    def _show_cold(self, target: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Cold dropout (``ModelSpec.cold_dropout``): replace the ID part of a random share of
        the target rows by what an item training never saw gets (:meth:`ItemVectors.cold_ids`).
        Shapes: (B, D'), (B,) -> (B, D')."""
        p = torch.full(item.shape, self.spec.cold_dropout, device=target.device)  # (B,)
        if self.spec.cold_dropout_weight == "rare":  # before mark_trained: every count 0
            n = self.train_count.shape[0]
            count = (self.train_count[torch.where(item < n, item, 0)] if n
                     else torch.zeros_like(item))
            k = self.cfg.cold_id_halfway
            p = p * k / (k + count.float())
        cold = torch.rand(item.shape, device=target.device) < p  # (B,)
        d = self.items.dim
        ids = torch.where(cold.unsqueeze(-1), self.items.cold_ids(item, self.content),
                          target[:, :d])  # (B, D)
        return torch.cat([ids, target[:, d:]], dim=-1)

    def _sequence(self, item: torch.Tensor, history: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sequence pre-step: content cosines of each behaviour to the target, and with
        ``retrieval_k`` only the top-K behaviours kept (GSU). Shapes: (B,), (B, L) -> (B, L'),
        (B, L') or None."""
        if not self.needs_similarities:
            return history, None
        mask = history > 0
        sims = self.similarity(self.content, item, history, mask)  # (B, L)
        k = self.retrieval_k
        if 0 < k < history.shape[1]:
            keep = retrieve_top_k(sims, mask, k)  # (B, K)
            history, sims = history.gather(1, keep), sims.gather(1, keep)
        return history, sims

    def describe(self) -> dict:
        """What the model is made of: its spec, each part's output width and parameter count."""
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        return {
            "name": self.spec.name,
            "parts": [{"name": "users", "out_dim": self.users.out_dim, "params": count(self.users)},
                      {"name": "items", "out_dim": self.items.out_dim, "params": count(self.items),
                       "cold_id": self.items.cold_id is not None}]
                     + [{"name": name, "out_dim": block.out_dim, "params": count(block)}
                        for name, block in self.blocks.items()],
            "retrieval_k": self.retrieval_k,
            "tower_in": self.tower.net[0].in_features,
            "residual_in": (self.residual.net[0].in_features if self.residual is not None
                            else 0),
            "frozen_params": sum(p.numel() for p in self.parameters() if not p.requires_grad),
            "params": count(self),
        }


class ContentResidual(MLP):
    """The content tower: an MLP whose last layer starts at zero, so its logit starts at 0 and
    the model starts as its ID model. Shapes: (B, in_dim) -> (B,)."""

    def __init__(self, in_dim: int, units: tuple[int, ...], dropout: float) -> None:
        super().__init__(in_dim, units, out_dim=1, dropout=dropout)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)


def trim_padding(history: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row (histories are left-padded).

    Shapes: (B, L) -> (B, L') with L' <= L, at least 1.
    """
    filled = (history > 0).any(0)
    if not filled.any():
        return history[:, -1:]
    return history[:, int(filled.nonzero()[0]):]
