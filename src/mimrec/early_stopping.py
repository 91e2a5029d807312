"""Keep the best epoch of a training run by a validation score (a leaf module: no mimrec imports).

Stages 1 and 2 score their vectors on valid after every epoch (epoch 0 = before training) and
restore the best epoch's weights at the end, so a stage never hands on vectors that scored lower
on valid than the ones it started from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class BestEpoch:
    """Tracks the best score seen and a copy of the weights that gave it.

    A score must be strictly higher than the best so far to count as better (a tie keeps the
    earlier, less trained weights). A NaN score (nothing to validate on) switches selection off:
    training then runs every epoch and keeps the last weights.

    Args:
        params: the tensors training changes; they are copied on improvement and restored.
        patience: stop after this many epochs without improvement; 0 = never stop early.
    """

    def __init__(self, params: Sequence[torch.Tensor], patience: int) -> None:
        self.params = list(params)
        self.patience = patience
        self.best_epoch = -1
        self.best_score = -math.inf
        self.scores: list[float] = []
        self.active = True
        self._saved: list[torch.Tensor] = []

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` for ``epoch``; returns True when training should stop."""
        self.scores.append(score)
        if math.isnan(score):
            self.active = False
        if not self.active:
            return False
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self._saved = [p.detach().clone() for p in self.params]
        return 0 < self.patience <= epoch - self.best_epoch

    @property
    def kept(self) -> int:
        """The epoch :meth:`restore` leaves in place: the best, or the last when selection is off."""
        return self.best_epoch if self.active and self._saved else len(self.scores) - 1

    @torch.no_grad()
    def restore(self) -> int:
        """Put the best epoch's weights back (a no-op when selection is off); returns its epoch."""
        if self.active and self._saved:
            for p, saved in zip(self.params, self._saved, strict=True):
                p.copy_(saved)
        return self.kept
