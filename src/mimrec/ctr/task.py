"""The CTR training objective, composed in one place: binary cross-entropy on the logits, the L2
penalty on the embedding tables, and the model's own auxiliary terms (the cold ID's regression).
The training loop calls :meth:`CtrTask.loss` and knows no block by name."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mimrec.ctr.model import CiUBM


def embedding_penalty(model: CiUBM, l2: float) -> torch.Tensor | float:
    """``l2 / 2 * sum ||E||^2`` over the model's trained embedding tables (the FuxiCTR
    ``embedding_regularizer`` convention; frozen ones are left out)."""
    tables = [e.weight for e in model.embeddings() if e.weight.requires_grad]
    if l2 <= 0 or not tables:
        return 0.0
    return 0.5 * l2 * sum(w.pow(2).sum() for w in tables)


@dataclass(frozen=True)
class CtrTask:
    """The loss of one training step.

    Args:
        embedding_l2: coefficient of :func:`embedding_penalty`.
    """

    embedding_l2: float = 0.0

    def loss(self, model: CiUBM, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
             label: torch.Tensor, forward: nn.Module | None = None,
             weight: torch.Tensor | None = None, scale: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The total loss to minimise and its BCE part (what the training log reports).

        ``forward``: what computes the logits (a DDP wrapper of ``model``; default ``model``).
        With ``weight`` (B,) the BCE term is ``scale * sum(weight * bce)`` (a rank's share of a
        data-parallel global batch, :mod:`mimrec.ctr.data_parallel`) and the reported BCE the
        weighted mean; without it, the plain mean.
        """
        logits = (forward or model)(user, item, history)
        if weight is None:
            bce = nn.functional.binary_cross_entropy_with_logits(logits, label)
            fit_term = bce
        else:
            each = nn.functional.binary_cross_entropy_with_logits(logits, label, reduction="none")
            fit_term = scale * (weight * each).sum()
            bce = (weight * each).sum().detach() / weight.sum().clamp(min=1.0)
        total = fit_term + embedding_penalty(model, self.embedding_l2)
        for term in model.auxiliary_losses(item):
            total = total + term
        return total, bce
