"""Training steps whose cost follows the batch, not the catalogue (``ctr.train.sparse_updates``).

With dense updates every step touches every row of every embedding table: the full-table L2
penalty gives each row a gradient, Adam moves each row, and the weight average blends each row.
That is what FuxiCTR does and what mimrec does by default; at a million users it costs about
0.3 s a step on one CPU thread, six times DIN's own forward and backward. With sparse updates:

- a training step builds the item vectors of the batch's items only, not of the whole catalogue,
  and the embedding tables give sparse gradients (``nn.Embedding(sparse=True)``) holding only
  the rows the batch used (:meth:`mimrec.ctr.model.CiUBM.use_sparse_gradients`);
- those tables are stepped by :class:`mimrec.ctr.row_adam.RowAdam` (lazy Adam: a row's moments
  move only when the row is used; the numbers of torch's ``SparseAdam``, computed row-wise), the
  other parameters by ``Adam`` as before (:class:`SplitAdam`);
- the L2 penalty applies to the rows a batch used (:func:`add_row_l2`; the mini-batch aware
  regularisation of the DIN paper, without its frequency scaling);
- the weight average blends the used rows each step and catches the others up lazily
  (:class:`mimrec.ctr.weight_average.WeightAverage`), which equals the dense average.

The results differ from dense updates (untouched rows' Adam moments do not decay and are not
shrunk by L2 between their uses), so the option is off by default and ML-100K's numbers are
those of dense updates.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mimrec.ctr.model import CiUBM
from mimrec.ctr.row_adam import RowAdam


@torch.no_grad()
def coalesce_rows(grad: torch.Tensor) -> torch.Tensor:
    """``grad.coalesce()`` of a row-indexed sparse gradient (COO, indices (1, N), values (N, D)),
    without its sort where the rows allow: rows already strictly increasing (a batch's unique
    catalogue rows) are only marked coalesced; for a table of at most N rows (a small feature
    vocabulary that every batch hits thousands of times) duplicates are summed into a dense
    (rows, D) buffer and the used rows read back from a count of each row. O(N) either way
    instead of a sort of N rows; the same rows and sums (up to the order of float additions)."""
    if grad.is_coalesced():
        return grad
    rows, values = grad._indices()[0], grad._values()
    if rows.numel() > 1 and bool((rows[1:] > rows[:-1]).all()):
        return torch.sparse_coo_tensor(grad._indices(), values, grad.shape, is_coalesced=True,
                                       check_invariants=False)
    num_rows = grad.shape[0]
    if rows.numel() < 2 or num_rows > rows.numel():
        return grad.coalesce()
    summed = values.new_zeros(num_rows, *values.shape[1:]).index_add_(0, rows, values)
    used = torch.bincount(rows, minlength=num_rows).nonzero().squeeze(1)
    return torch.sparse_coo_tensor(used.unsqueeze(0), summed.index_select(0, used), grad.shape,
                                   is_coalesced=True, check_invariants=False)


@torch.no_grad()
def add_row_l2(tables: list[nn.Embedding], l2: float) -> None:
    """Add the gradient of ``l2 / 2 * ||E_r||^2`` for each row ``r`` a step used (the rows of
    its sparse gradient) to that gradient, coalesced."""
    for table in tables:
        grad = table.weight.grad
        if grad is None:
            continue
        grad = coalesce_rows(grad)  # the one coalesce of the step: later readers find it done
        if l2 > 0:
            rows = grad._indices()[0]
            values = grad._values() + l2 * table.weight.index_select(0, rows)
            grad = torch.sparse_coo_tensor(grad._indices(), values, grad.shape,
                                           is_coalesced=True, check_invariants=False)
        table.weight.grad = grad


def touched_rows(table: nn.Embedding) -> torch.Tensor:
    """The rows of ``table`` the last backward gave a gradient (coalesced sparse gradient;
    :func:`add_row_l2` has coalesced it already, so this is no second sort)."""
    grad = table.weight.grad
    if grad is None:
        return torch.zeros(0, dtype=torch.long, device=table.weight.device)
    return grad.coalesce()._indices()[0]


class SplitAdam:
    """:class:`RowAdam` (lazy Adam) on the sparse-gradient embedding tables, ``Adam`` on everything else, one
    learning rate; steps, zeroes and saves both (a checkpoint holds both states). It has the
    parts of torch's optimiser interface that training uses."""

    def __init__(self, dense: list[nn.Parameter], sparse: list[nn.Parameter], lr: float) -> None:
        self.dense = torch.optim.Adam(dense, lr=lr) if dense else None
        self.sparse = RowAdam(sparse, lr=lr) if sparse else None

    def _parts(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.dense, self.sparse) if opt is not None]

    def step(self) -> None:  # noqa: D102
        for opt in self._parts():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D102
        for opt in self._parts():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"dense": self.dense.state_dict() if self.dense else None,
                "sparse": self.sparse.state_dict() if self.sparse else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        for name in ("dense", "sparse"):
            opt = getattr(self, name)
            if opt is not None:
                opt.load_state_dict(state_dict[name])


def make_optimizer(model: CiUBM, lr: float, sparse_updates: bool
                   ) -> tuple[torch.optim.Optimizer | SplitAdam, list[nn.Embedding]]:
    """The optimiser of a CTR model's trained parameters and the tables with sparse gradients
    (none without ``sparse_updates``: then it is plain ``Adam``, as before)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    if not sparse_updates:
        return torch.optim.Adam(trained, lr=lr), []
    tables = model.use_sparse_gradients()
    sparse_ids = {id(t.weight) for t in tables}
    dense = [p for p in trained if id(p) not in sparse_ids]
    return SplitAdam(dense, [t.weight for t in tables], lr), tables
