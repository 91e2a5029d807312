"""The exponential moving average of a CTR model's weights that training judges and keeps."""

from __future__ import annotations

import copy

import torch
from torch import nn

from mimrec.ctr.sparse_updates import touched_rows


class _LazyTable:
    """The average of one sparse-gradient embedding table, kept row by row.

    ``last[r]`` is the update count up to which row ``r``'s average is exact. Between two uses
    of a row its weight is constant, so the updates it missed are one blend:
    ``avg = P * avg + (1 - P) * w`` with ``P`` the product of the missed steps' decays.
    """

    def __init__(self, average: torch.Tensor, table: nn.Embedding) -> None:
        self.average, self.table = average, table
        self.last = torch.zeros(table.weight.shape[0], dtype=torch.long)

    def catch_up(self, rows: torch.Tensor | None, to: int, log_decay: torch.Tensor) -> None:
        """Bring ``rows`` (None: all) up to update ``to`` with the table's current weights."""
        rows = torch.arange(len(self.last)) if rows is None else rows.cpu()
        kept = torch.exp(log_decay[to] - log_decay[self.last[rows]]).to(self.average.dtype)
        kept = kept.to(self.average.device).unsqueeze(1)
        on = rows.to(self.average.device)
        weight = self.table.weight.detach().index_select(0, on)
        blended = kept * self.average.index_select(0, on) + (1 - kept) * weight
        self.average.index_copy_(0, on, blended)  # rows are unique (a coalesced gradient's)
        self.last[rows] = to


class WeightAverage:
    """An exponential moving average of a model's weights, kept in a copy of the model.

    Floating-point parameters and buffers (batch-norm statistics) are averaged with ``decay``;
    integer buffers (index tables, step counters) are copied as they are. (torch's
    ``AveragedModel`` would interpolate integer buffers too and round their values.) The decay
    warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that the average of a
    short run is not dominated by the untrained starting weights.

    Frozen parameters (``requires_grad`` off, e.g. a content model's ID part started from DIN)
    are left out: they never move, so their average is their value. ``sparse_tables``
    (embedding tables with sparse gradients, :mod:`mimrec.ctr.sparse_updates`)
    are averaged lazily: each step blends only the rows it used; call :meth:`before_step` between
    the backward pass and the optimiser's step, :meth:`update` after it, and :meth:`sync` before
    reading :attr:`module`. The result equals the dense average up to rounding.
    """

    def __init__(self, model: nn.Module, decay: float,
                 sparse_tables: list[nn.Embedding] | tuple = ()) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model)
        ours, theirs = self.module.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        name_of = {id(v): k for k, v in theirs.items()}
        lazy = {name_of[id(t.weight)]: t for t in sparse_tables}
        self._lazy = [_LazyTable(ours[k].data, t) for k, t in lazy.items()]
        frozen = {k for k, v in theirs.items() if isinstance(v, nn.Parameter)
                  and not v.requires_grad}  # never move: their average is themselves
        self._float = [(ours[k].data, theirs[k].data) for k in ours
                       if ours[k].is_floating_point() and k not in lazy and k not in frozen]
        self._other = [(ours[k].data, theirs[k].data) for k in ours
                       if not ours[k].is_floating_point()]
        self._log_decay = torch.zeros(1024, dtype=torch.float64)  # [n] = sum of log decays 1..n

    def _next_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def before_step(self) -> None:
        """Catch the rows this step uses up to the last update, with their weights before the
        optimiser moves them (no-op without sparse tables)."""
        for lazy in self._lazy:
            lazy.catch_up(touched_rows(lazy.table), self.updates, self._log_decay)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights by ``1 - decay``."""
        decay = self._next_decay()
        self.updates += 1
        for ours_t, theirs_t in self._float:
            ours_t.lerp_(theirs_t, 1.0 - decay)
        for ours_t, theirs_t in self._other:
            ours_t.copy_(theirs_t)
        if not self._lazy:
            return
        if self.updates >= len(self._log_decay):
            self._log_decay = torch.cat([self._log_decay, torch.zeros_like(self._log_decay)])
        self._log_decay[self.updates] = self._log_decay[self.updates - 1] + torch.log(
            torch.tensor(decay, dtype=torch.float64))
        for lazy in self._lazy:
            lazy.catch_up(touched_rows(lazy.table), self.updates, self._log_decay)

    @torch.no_grad()
    def sync(self) -> None:
        """Bring every row of the sparse tables up to the last update (no-op without them)."""
        for lazy in self._lazy:
            lazy.catch_up(None, self.updates, self._log_decay)

    def resumed(self, updates: int) -> None:
        """After loading a synced average saved at ``updates`` updates: every row is exact there."""
        self.updates = updates
        self._log_decay = torch.zeros(max(1024, updates + 1), dtype=torch.float64)
        for lazy in self._lazy:
            lazy.last.fill_(updates)
