"""Data-parallel CTR training under ``torchrun``: torch DistributedDataParallel (gloo on CPU, NCCL
on GPU), each rank holding its own shard of the train samples (rows ``rank::world``).

Every rank walks the same global order of all train rows (torch's random generator is set to
rank 0's state at each epoch's start, then ``randperm``: with dropout off this is exactly the order
one process draws) and takes, from each global batch of ``batch_size`` rows, the rows of its
shard. The BCE of a rank's rows is summed and scaled by ``world / global batch rows``, so DDP's
gradient average is the gradient of the mean over the whole global batch: one process with the
same batch size computes the same step (up to the order of float sums; dropout masks and
batch-norm statistics are per rank). Every rank runs the same number of steps (one per global
batch, a rank without two rows of its own in a batch pads with rows of weight 0), so uneven
shards never leave a rank waiting. Validation is computed on rank 0 and broadcast, so early
stopping and the weight average decide the same on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mimrec.csft.distributed import is_distributed


@dataclass
class DataParallel:
    """This rank's part of a data-parallel training run.

    Args:
        module: the DDP wrapper of the model (its forward all-reduces the gradients).
        rank: this process's rank.
        world: number of ranks.
        rows: train rows over all ranks.
    """

    module: DistributedDataParallel
    rank: int
    world: int
    rows: int

    @classmethod
    def wrap(cls, model: nn.Module, local_rows: int) -> DataParallel | None:
        """Wrap ``model`` when a process group of several ranks runs; None otherwise (then
        training is the one-process loop, unchanged)."""
        if not is_distributed():
            return None
        device = next(model.parameters()).device
        ddp = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        return cls(ddp, dist.get_rank(), dist.get_world_size(), total_rows(local_rows, device))

    def epoch_order(self) -> torch.Tensor:
        """The global order of all train rows for one epoch, equal on every rank."""
        synced = torch.get_rng_state().to(_comm_device(self._device()))
        dist.broadcast(synced, src=0)
        torch.set_rng_state(synced.cpu())
        return torch.randperm(self.rows)

    def local_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This rank's rows of a global batch (indices into its shard), their loss weights and
        the scale of their summed loss. Shapes: ``batch`` (B,) -> (b,), (b,)."""
        mine = batch[batch % self.world == self.rank]
        local = (mine - self.rank) // self.world
        weight = torch.ones(len(local))
        if len(local) < 2:  # batch norm needs two rows: pad with rows that do not count
            pad = torch.arange(2 - len(local))
            local, weight = torch.cat([local, pad]), torch.cat([weight, torch.zeros(len(pad))])
        return local, weight, self.world / len(batch)

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        out = torch.tensor([value], dtype=torch.float64, device=_comm_device(self._device()))
        dist.broadcast(out, src=0)
        return float(out.item())

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device


def total_rows(local_rows: int, device: torch.device) -> int:
    """The sum of every rank's ``local_rows`` (``local_rows`` itself on one process)."""
    if not is_distributed():
        return local_rows
    rows = torch.tensor([local_rows], dtype=torch.int64, device=_comm_device(device))
    dist.all_reduce(rows)
    return int(rows.item())


def _comm_device(device: torch.device) -> torch.device:
    """Where a tensor must be for a collective: the GPU under NCCL, the CPU under gloo."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")
