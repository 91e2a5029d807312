"""Data-parallel glue for C-SFT on ``torch.distributed`` (gloo on CPU, NCCL works the same way).

Every worker gathers the embeddings of all workers and computes the *whole* step's loss; only its
own rows carry gradients. Summing the workers' parameter gradients (:func:`all_reduce_gradients`)
then gives exactly the gradient of the single-process loss on the concatenated batch. Parameters
used after the gather (the temperature) get the full gradient on every worker already and are
not summed. Without an initialised process group every function is the single-process identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from mimrec.processes import end_with_launcher
from mimrec.runtime import launched_by_torchrun


def is_distributed() -> bool:
    """Whether a process group with more than one worker is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of workers (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This worker's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All workers' ``x`` concatenated in rank order; gradients flow through the local part only.

    Every worker must pass the same shape. Shapes: (B, ...) -> (world_size * B, ...).
    """
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum each parameter's gradient over the workers (no-op on one worker)."""
    if not is_distributed():
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def broadcast_float(x: float) -> float:
    """Worker 0's ``x`` on every worker (the identity on one worker); every worker must call it."""
    if not is_distributed():
        return x
    value = torch.tensor([x], dtype=torch.float64)
    dist.broadcast(value, src=0)
    return float(value.item())


def barrier() -> None:
    """Wait for every worker (no-op on one worker)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def process_group_from_env(backend: str = "gloo") -> Iterator[None]:
    """Join the process group that ``torchrun`` describes in the environment, for the block.

    Without ``WORLD_SIZE > 1`` in the environment (a plain ``python -m`` run) nothing happens.
    """
    end_with_launcher()  # a rank ends with torchrun, even by kill -9
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()
