"""Interest blocks of the CTR model: each reads one shared :class:`Behaviours` context of a batch
and returns a (B, out_dim) vector for the tower. DIN is the list ``[IdAttention]``; CiUBM adds
content blocks. A new block is one :class:`InterestBlock` subclass, named in a model's block list
(``ModelSpec(name, blocks=("id_attention", MyBlock))``); the kinds a config file can name are
resolved in :func:`block_class`.

Letters: B batch, L behaviour length, N catalogue items (+ 1 padding row), D item vector dim,
E content dim, P projected content dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from mimrec.ctr.config import BlockKind, ModelConfig, ModelSpec
from mimrec.ctr.content import ContentAttention, ContentProjection, SimilarityAwareAttention, SimTier
from mimrec.ctr.modules import TargetAttention, masked_mean


@dataclass
class CatalogueTables:
    """Per-catalogue-item tensors every sample of a batch reads: the item vectors, the content
    vectors and each block's precomputed part (:meth:`InterestBlock.prepare`). They depend on the
    weights only, so inference computes them once and passes them to every forward call.

    Shapes: ``vectors`` (N, D), ``content`` (N, E) (empty for ID-only models).
    """

    vectors: torch.Tensor
    content: torch.Tensor
    prepared: dict[str, Any] = field(default_factory=dict)


@dataclass
class Behaviours:
    """What every interest block reads for one batch. Item indices are catalogue rows (0 =
    padding / unknown), the one index space of blocks.

    Shapes: ``target`` (B, D) target item vectors; ``item`` (B,); ``history``, ``mask``, ``sims``
    (B, L) (``sims``: content cosines target-behaviour, None for models without content);
    ``user`` (B,) user indices (0 = unknown).
    """

    target: torch.Tensor
    item: torch.Tensor
    history: torch.Tensor
    mask: torch.Tensor
    sims: torch.Tensor | None
    tables: CatalogueTables
    user: torch.Tensor


@dataclass(frozen=True)
class BlockDims:
    """Sizes a block is built for: item vector dim D, content dim E (0 without content) and the
    number of users U (indices 1..U)."""

    item_dim: int
    content_dim: int
    num_users: int = 0


class InterestBlock(nn.Module):
    """Base of interest blocks. Subclasses set ``out_dim`` and implement :meth:`build` and
    :meth:`forward`; ``reads_content`` / ``reads_similarities`` say what the model must compute
    for them."""

    reads_content: ClassVar[bool] = False
    reads_similarities: ClassVar[bool] = False
    out_dim: int

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> InterestBlock:
        """The block sized for a model."""
        raise NotImplementedError

    def prepare(self, tables: CatalogueTables) -> Any:
        """The block's per-catalogue precomputation (linear projections of item rows); None by
        default. Read back in :meth:`forward` as ``ctx.tables.prepared[name]``."""
        return None

    def forward(self, ctx: Behaviours, prepared: Any) -> torch.Tensor:  # (B, out_dim)
        raise NotImplementedError


class IdAttention(InterestBlock):
    """DIN target attention over the behaviours' item vectors (ID + categorical features)."""

    def __init__(self, dim: int, units: tuple[int, ...], softmax: bool) -> None:
        super().__init__()
        self.attention = TargetAttention(dim, units, softmax)
        self.out_dim = dim

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> IdAttention:
        return cls(dims.item_dim, cfg.attention_units, cfg.attention_softmax)

    def prepare(self, tables: CatalogueTables) -> torch.Tensor:
        return self.attention.key_projection(tables.vectors)  # (N, H)

    def forward(self, ctx: Behaviours, prepared: torch.Tensor) -> torch.Tensor:
        return self.attention(ctx.target, ctx.tables.vectors, ctx.mask, index=ctx.history,
                              key_part=prepared)[0]


class SimilarityAware(InterestBlock):
    """SA-TA: ID attention scores fused with the content cosines (see SimilarityAwareAttention)."""

    reads_content = True
    reads_similarities = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention = SimilarityAwareAttention(dim)
        self.out_dim = dim

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> SimilarityAware:
        return cls(dims.item_dim)

    def prepare(self, tables: CatalogueTables) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.project(tables.vectors)

    def forward(self, ctx: Behaviours, prepared: tuple[torch.Tensor, torch.Tensor]
                ) -> torch.Tensor:
        return self.attention(ctx.target, ctx.tables.vectors, ctx.history, ctx.sims, ctx.mask,
                              tables=prepared)


class SimTierHistogram(InterestBlock):
    """SimTier: the histogram of target-to-behaviour content cosines as a feature."""

    reads_content = True
    reads_similarities = True

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.simtier = SimTier(bins)
        self.out_dim = bins

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> SimTierHistogram:
        return cls(cfg.simtier_bins)

    def forward(self, ctx: Behaviours, prepared: None) -> torch.Tensor:
        return self.simtier(ctx.sims, ctx.mask)


class ContentSpaceAttention(InterestBlock):
    """Target attention in content space (query: the target's projected content vector), so a
    cold item still gets an interest vector."""

    reads_content = True

    def __init__(self, content_dim: int, proj_dim: int, units: tuple[int, ...], softmax: bool,
                 dropout: float) -> None:
        super().__init__()
        self.attention = ContentAttention(content_dim, proj_dim, units, softmax, dropout)
        self.out_dim = proj_dim

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> ContentSpaceAttention:
        return cls(dims.content_dim, cfg.content_proj_dim, cfg.attention_units,
                   cfg.attention_softmax, cfg.content_dropout)

    def prepare(self, tables: CatalogueTables) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.project_table(tables.content)

    def forward(self, ctx: Behaviours, prepared: tuple[torch.Tensor, torch.Tensor]
                ) -> torch.Tensor:
        return self.attention(ctx.tables.content, ctx.item, ctx.history, ctx.mask,
                              tables=prepared)


class TargetContent(InterestBlock):
    """The target's projected content vector as a feature."""

    reads_content = True

    def __init__(self, content_dim: int, proj_dim: int, dropout: float) -> None:
        super().__init__()
        self.projection = ContentProjection(content_dim, proj_dim, dropout)
        self.out_dim = proj_dim

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> TargetContent:
        return cls(dims.content_dim, cfg.content_proj_dim, cfg.content_dropout)

    def forward(self, ctx: Behaviours, prepared: None) -> torch.Tensor:
        return self.projection(ctx.tables.content[ctx.item])


class ContentTaste(InterestBlock):
    """The user's taste in content space, two ways, each met with the target's projected
    content: a per-user taste vector learned from all of the user's train impressions (clicks
    and non-clicks: a factorisation of user x content, which reaches items no ID was trained
    for), and the mean projected content of the user's behaviours (for users with few
    impressions). The output is the two element-wise products ``[taste * t, mean_h * t]``, so
    the content residual sums them into dot products. The taste table is an embedding, under
    the embedding L2 like the ID tables, so where content carries no user-specific signal it
    stays near its small start.

    Shapes: ``ctx.user`` (B,), ``ctx.item`` (B,), ``ctx.history`` (B, L) -> (B, 2P).
    """

    reads_content = True

    def __init__(self, content_dim: int, proj_dim: int, num_users: int, dropout: float) -> None:
        super().__init__()
        self.projection = ContentProjection(content_dim, proj_dim, dropout)
        self.taste = nn.Embedding(num_users + 1, proj_dim, padding_idx=0)
        self.out_dim = 2 * proj_dim

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> ContentTaste:
        return cls(dims.content_dim, cfg.content_proj_dim, dims.num_users, cfg.content_dropout)

    def prepare(self, tables: CatalogueTables) -> torch.Tensor:
        return self.projection(tables.content)  # (N, P)

    def forward(self, ctx: Behaviours, prepared: torch.Tensor) -> torch.Tensor:
        target = prepared[ctx.item]  # (B, P)
        behaviours = masked_mean(prepared[ctx.history], ctx.mask.unsqueeze(-1).float())  # (B, P)
        return torch.cat([self.taste(ctx.user) * target, behaviours * target], dim=-1)


def block_class(kind: BlockKind | type[InterestBlock]) -> type[InterestBlock]:
    """The class of a block kind named in a config (a class passes through)."""
    if isinstance(kind, type):
        if not issubclass(kind, InterestBlock):
            raise TypeError(f"{kind.__name__} is not an InterestBlock")
        return kind
    match kind:
        case "id_attention":
            return IdAttention
        case "sa_ta":
            return SimilarityAware
        case "simtier":
            return SimTierHistogram
        case "content_attention":
            return ContentSpaceAttention
        case "target_content":
            return TargetContent
        case "content_taste":
            return ContentTaste
    raise ValueError(f"unknown block kind {kind!r}")


def block_name(kind: BlockKind | type[InterestBlock]) -> str:
    """A block's name in the model (its config kind, or its class name)."""
    return kind.__name__ if isinstance(kind, type) else kind


def reads_content(spec: ModelSpec) -> bool:
    """Whether a model reads content vectors (a content block, the cold ID or GSU)."""
    return (any(block_class(b).reads_content for b in spec.blocks)
            or (spec.cold_id and spec.item_id) or spec.retrieval_k > 0)


def reads_similarities(spec: ModelSpec) -> bool:
    """Whether a model needs target-to-behaviour content cosines (a block reads them, or GSU)."""
    return any(block_class(b).reads_similarities for b in spec.blocks) or spec.retrieval_k > 0
