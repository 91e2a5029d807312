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

Embedding tables with sparse gradients (``ctr.train.sparse_updates``) are left out of DDP: its
reducer would all-reduce them as sparse tensors bucket by bucket. Instead each step all-gathers
the rows every rank used (indices and values, three collectives for all tables together) and
sums them into one coalesced sparse gradient per table (:meth:`DataParallel.reduce_sparse`), whose
cost follows the batches' rows, never the tables' size.
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
    def wrap(cls, model: nn.Module, local_rows: int,
             sparse_tables: list[nn.Embedding] | tuple = ()) -> DataParallel | None:
        """Wrap ``model`` when a process group of several ranks runs; None otherwise (then
        training is the one-process loop, unchanged). ``sparse_tables`` are kept out of DDP
        (rank 0's weights are broadcast here; :meth:`reduce_sparse` reduces their gradients)."""
        if not is_distributed():
            return None
        device = next(model.parameters()).device
        if sparse_tables:
            name_of = {id(p): n for n, p in model.named_parameters()}
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                model, [name_of[id(t.weight)] for t in sparse_tables])
            for table in sparse_tables:
                weight = table.weight.data
                synced = weight.to(_comm_device(device))
                dist.broadcast(synced, src=0)
                weight.copy_(synced)
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

    def reduce_sparse(self, tables: list[nn.Embedding]) -> None:
        """Replace each table's sparse gradient by the mean over ranks (what DDP does for the
        other parameters), coalesced, from an all-gather of every rank's coalesced rows."""
        reduce_sparse_gradients(tables, self.world, _comm_device(self._device()))

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        out = torch.tensor([value], dtype=torch.float64, device=_comm_device(self._device()))
        dist.broadcast(out, src=0)
        return float(out.item())

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device


@torch.no_grad()
def reduce_sparse_gradients(tables: list[nn.Embedding], world: int,
                            comm: torch.device) -> None:
    """All-gather the rows of the tables' sparse gradients over ``world`` ranks and set each
    table's gradient to their sum / ``world``, coalesced (a table without a gradient on a rank
    adds no rows). Collectives: row counts, then the padded row indices and values."""
    grads = [t.weight.grad.coalesce() if t.weight.grad is not None else None for t in tables]
    dims = [t.weight.shape[1] for t in tables]
    counts = torch.tensor([g._nnz() if g is not None else 0 for g in grads], dtype=torch.int64)
    all_counts = [torch.zeros_like(counts, device=comm) for _ in range(world)]
    dist.all_gather(all_counts, counts.to(comm))
    per_rank = torch.stack([c.cpu() for c in all_counts])  # (world, tables) rows
    sizes = per_rank * torch.tensor(dims, dtype=torch.int64)  # (world, tables) values
    widest, width = int(per_rank.sum(1).max()), int(sizes.sum(1).max())
    device = tables[0].weight.device
    rows = torch.zeros(widest, dtype=torch.int64, device=device)
    values = torch.zeros(width, dtype=tables[0].weight.dtype, device=device)
    at = vat = 0
    for g, n, d in zip(grads, counts.tolist(), dims, strict=True):
        if g is not None and n:
            rows[at:at + n] = g._indices()[0]
            values[vat:vat + n * d] = g._values().reshape(-1)
            at, vat = at + n, vat + n * d
    all_rows = [torch.empty_like(rows, device=comm) for _ in range(world)]
    all_values = [torch.empty_like(values, device=comm) for _ in range(world)]
    dist.all_gather(all_rows, rows.to(comm))
    dist.all_gather(all_values, values.to(comm))
    # where table i's rows and values start in rank r's gathered buffers: (world, tables)
    starts, vstarts = per_rank.cumsum(1) - per_rank, sizes.cumsum(1) - sizes
    for i, (table, d) in enumerate(zip(tables, dims, strict=True)):
        parts_rows, parts_values = [], []
        for r in range(world):
            start, vstart, n = int(starts[r, i]), int(vstarts[r, i]), int(per_rank[r, i])
            parts_rows.append(all_rows[r][start:start + n].to(device))
            parts_values.append(all_values[r][vstart:vstart + n * d].to(device).view(n, d))
        summed = torch.sparse_coo_tensor(torch.cat(parts_rows).unsqueeze(0),
                                         torch.cat(parts_values) / world,
                                         table.weight.shape).coalesce()
        table.weight.grad = summed


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
