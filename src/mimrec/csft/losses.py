"""Multi-level InfoNCE with space-time negatives, the C-SFT loss.

For each anchor the candidates are every key of the step ("space": the keys of all data-parallel
workers, see :mod:`mimrec.csft.distributed`) followed by the queue of earlier steps' keys
("time", :class:`~mimrec.csft.queue.EmbeddingQueue`). A candidate whose item id equals the
positive's or the anchor's is a false negative and is masked out of the softmax, except the
positive itself. Levels, each with its weight (0 = off):

* ``fused``: fused anchor vs fused keys (and, when symmetric, fused key vs fused anchors);
* ``modality``: each single modality of the anchor vs the fused keys, averaged over modalities;
* ``matryoshka``: the fused level on re-normalised prefixes of the vectors (e.g. 32 and 64 dims),
  averaged over prefix sizes.

All levels share one learnable temperature (init 0.07, 1/T clamped to [1, max_logit_scale]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mimrec.csft.distributed import gather_with_grad
from mimrec.csft.queue import EmbeddingQueue


@dataclass
class ContrastiveBatch:
    """One worker's share of a step: anchors, their modality views, and the positive keys.

    Shapes: anchor, key (B, D) unit norm; anchor_modalities (B, M, D) unit norm where present;
    anchor_present (B, M) bool; anchor_id, key_id (B,) int64 item ids; weight (B,) float.
    """

    anchor: torch.Tensor
    anchor_modalities: torch.Tensor
    anchor_present: torch.Tensor
    key: torch.Tensor
    anchor_id: torch.Tensor
    key_id: torch.Tensor
    weight: torch.Tensor

    def gathered(self) -> ContrastiveBatch:
        """The step's batch over all workers (rank order); gradients reach the local rows only."""
        present = gather_with_grad(self.anchor_present.to(torch.uint8)).bool()
        return ContrastiveBatch(
            gather_with_grad(self.anchor), gather_with_grad(self.anchor_modalities), present,
            gather_with_grad(self.key), gather_with_grad(self.anchor_id),
            gather_with_grad(self.key_id), gather_with_grad(self.weight))


@dataclass
class LossOutput:
    """The weighted total, each level's value, and what the step saw.

    ``keys``/``key_ids`` are the step's gathered keys, detached, ready to push into the queue.
    """

    total: torch.Tensor
    levels: dict[str, float] = field(default_factory=dict)
    in_batch: int = 0
    queued: int = 0
    keys: torch.Tensor | None = None
    key_ids: torch.Tensor | None = None


def masked_info_nce(queries: torch.Tensor, candidates: torch.Tensor, target: torch.Tensor,
                    query_ids: torch.Tensor, candidate_ids: torch.Tensor,
                    scale: torch.Tensor | float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of each query against all candidates, false negatives masked out.

    Args:
        queries: L2-normalised query embeddings.
        candidates: L2-normalised candidate embeddings.
        target: index of each query's positive among the candidates.
        query_ids: item id of each query; candidates with this id are masked out.
        candidate_ids: item id of each candidate; candidates with the positive's id are masked
            out, except the positive itself.
        scale: 1 / temperature.
        weight: per-query weight of the mean; None = equal weights.

    Shapes: queries (B, D), candidates (C, D), target, query_ids (B,), candidate_ids (C,),
        weight (B,) -> scalar.
    """
    logits = scale * (queries @ candidates.T)  # (B, C)
    positive_ids = candidate_ids[target]  # (B,)
    same = (candidate_ids[None, :] == positive_ids[:, None]) | (
        candidate_ids[None, :] == query_ids[:, None])  # (B, C)
    same[torch.arange(len(target)), target] = False
    logits = logits.masked_fill(same, float("-inf"))
    loss = F.cross_entropy(logits, target, reduction="none")  # (B,)
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp(min=1e-12)


def prefix(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The first ``dim`` coordinates, re-normalised (a Matryoshka view). Shapes: (N, D) -> (N, dim)."""
    return F.normalize(x[:, :dim], dim=-1)


class MultiLevelInfoNCE(nn.Module):
    """The C-SFT loss: weighted InfoNCE levels over in-batch ("space") and queued ("time") keys.

    Args:
        fused_weight: weight of the fused level (0 = off).
        modality_weight: weight of the single-modality level (0 = off).
        matryoshka_weight: weight of the prefix level (0 = off).
        matryoshka_dims: prefix sizes of the Matryoshka level, each < D.
        symmetric: add the key -> anchor direction at the fused and Matryoshka levels.
        temperature_init: initial temperature T (1/T is learned in log space).
        max_logit_scale: 1/T is clamped to [1, max_logit_scale].

    Shapes: forward takes one worker's :class:`ContrastiveBatch` of B pairs and the queue of
        Q keys; every anchor is scored against world_size x B + Q candidates.
    """

    def __init__(self, fused_weight: float = 1.0, modality_weight: float = 0.0,
                 matryoshka_weight: float = 0.0, matryoshka_dims: tuple[int, ...] = (),
                 symmetric: bool = True, temperature_init: float = 0.07,
                 max_logit_scale: float = 100.0) -> None:
        super().__init__()
        self.weights = {"fused": fused_weight, "modality": modality_weight,
                        "matryoshka": matryoshka_weight if matryoshka_dims else 0.0}
        self.matryoshka_dims = tuple(matryoshka_dims)
        self.symmetric = symmetric
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))
        self.max_log_scale = math.log(max_logit_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The clamped logit scale 1 / T."""
        return self.log_scale.clamp(0.0, self.max_log_scale).exp()

    def forward(self, batch: ContrastiveBatch, queue: EmbeddingQueue | None = None) -> LossOutput:
        b = batch.gathered()
        dim = b.key.shape[1]
        q_keys = queue.keys if queue is not None else b.key.new_empty((0, dim))  # (Q, D)
        q_ids = queue.ids if queue is not None else b.key_id.new_empty((0,))  # (Q,)
        levels: dict[str, torch.Tensor] = {}
        if self.weights["fused"] > 0:
            levels["fused"] = self._pair_level(b.anchor, b.key, b, q_keys, q_ids)
        if self.weights["modality"] > 0:
            levels["modality"] = self._modality_level(b, q_keys, q_ids)
        if self.weights["matryoshka"] > 0:
            levels["matryoshka"] = torch.stack([
                self._pair_level(prefix(b.anchor, d), prefix(b.key, d), b, prefix(q_keys, d), q_ids)
                for d in self.matryoshka_dims]).mean()
        total = sum(self.weights[name] * value for name, value in levels.items())
        return LossOutput(total, {k: float(v.detach()) for k, v in levels.items()},
                          in_batch=b.key.shape[0], queued=q_ids.shape[0],
                          keys=b.key.detach(), key_ids=b.key_id.detach())

    def _pair_level(self, anchor: torch.Tensor, key: torch.Tensor, b: ContrastiveBatch,
                    q_keys: torch.Tensor, q_ids: torch.Tensor) -> torch.Tensor:
        """Anchor -> keys + queue (and key -> anchors + queue when symmetric). Shapes: (N, d)."""
        target = torch.arange(anchor.shape[0])
        forward = masked_info_nce(anchor, torch.cat([key, q_keys]), target, b.anchor_id,
                                  torch.cat([b.key_id, q_ids]), self.scale, b.weight)
        if not self.symmetric:
            return forward
        backward = masked_info_nce(key, torch.cat([anchor, q_keys]), target, b.key_id,
                                   torch.cat([b.anchor_id, q_ids]), self.scale, b.weight)
        return (forward + backward) / 2

    def _modality_level(self, b: ContrastiveBatch, q_keys: torch.Tensor,
                        q_ids: torch.Tensor) -> torch.Tensor:
        """Mean over modalities of (anchor's modality -> fused keys + queue)."""
        candidates, candidate_ids = torch.cat([b.key, q_keys]), torch.cat([b.key_id, q_ids])
        losses = []
        for m in range(b.anchor_present.shape[1]):
            rows = torch.nonzero(b.anchor_present[:, m]).squeeze(1)  # anchors with modality m
            if rows.numel() == 0:
                continue
            losses.append(masked_info_nce(b.anchor_modalities[rows, m], candidates, rows,
                                          b.anchor_id[rows], candidate_ids, self.scale,
                                          b.weight[rows]))
        return torch.stack(losses).mean() if losses else b.key.sum() * 0.0
