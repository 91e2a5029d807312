"""Row-wise lazy Adam for embedding tables with sparse gradients (``ctr.train.sparse_updates``).

:class:`RowAdam` computes what torch's ``SparseAdam`` computes (lazy Adam: only the rows of a
step's gradient move, and only their moments), with the same arithmetic in the same order, so the
two give the same numbers. It works on the coalesced gradient's rows directly: ``index_select``
reads those rows of the two moments, ``index_add_`` writes the moment and weight updates back.
``SparseAdam`` instead builds three sparse tensors a step (``sparse_mask`` twice, a sparse
``add_`` into each dense table), whose generic sparse path costs several times more on the CPU.
The state (``step``, ``exp_avg``, ``exp_avg_sq`` per table) has ``SparseAdam``'s names and types,
so a checkpoint saved with either loads into the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam on parameters with sparse (COO, row-indexed) gradients, e.g. the weights of
    ``nn.Embedding(sparse=True)``.

    Args:
        params: the tables' weights, shape (rows, dim).
        lr: learning rate.
        betas: Adam's moment decays.
        eps: added to the second moment's square root.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "maximize": False})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 (torch's signature)
        """One step on every parameter that has a sparse gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("RowAdam needs sparse gradients; use Adam for dense ones")
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                grad = param.grad.coalesce()  # a no-op when the gradient is coalesced already
                values = grad._values()
                if values.numel() == 0:
                    continue
                rows = grad._indices()[0]
                _row_adam(param, rows, values, state["exp_avg"], state["exp_avg_sq"],
                          state["step"], group["lr"], beta1, beta2, group["eps"])
        return loss


def _row_adam(param: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor,
              exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int, lr: float,
              beta1: float, beta2: float, eps: float) -> None:
    """Adam on the unique ``rows`` of ``param`` given their gradient rows ``grad``, written as
    ``SparseAdam`` writes it (``old += (1 - b) * (new - old)``). Shapes: ``rows`` (R,),
    ``grad`` (R, dim)."""
    old_avg = exp_avg.index_select(0, rows)
    avg_update = grad.sub(old_avg).mul_(1 - beta1)
    exp_avg.index_add_(0, rows, avg_update)
    old_sq = exp_avg_sq.index_select(0, rows)
    sq_update = grad.pow(2).sub_(old_sq).mul_(1 - beta2)
    exp_avg_sq.index_add_(0, rows, sq_update)
    numer = avg_update.add_(old_avg)
    denom = sq_update.add_(old_sq).sqrt_().add_(eps)
    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    param.index_add_(0, rows, numer.div_(denom).mul_(-step_size))
