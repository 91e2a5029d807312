"""Data-parallel CTR training under ``torchrun``: torch DistributedDataParallel (gloo on CPU, NCCL
on GPU), each rank holding its own shard of the train samples (rows ``rank::world``).

Every rank walks the same global order of all train rows (torch's random generator is set to
rank 0's state at each epoch's start, then ``randperm``: with dropout off this is exactly the order
one process draws) and takes, from each global batch of ``batch_size`` rows, the rows of its
shard. The BCE of a rank's rows is summed and scaled by ``world / global batch rows``, so DDP's
gradient average is the gradient of the mean over the whole global batch: one process with the
same batch size computes the same step (up to the order of float sums; dropout masks and
batch-norm statistics are per rank: DDP does not broadcast buffers before each forward, rank 0's
are broadcast at each epoch's end). Every rank runs the same number of steps (one per global
batch, a rank without two rows of its own in a batch pads with rows of weight 0), so uneven
shards never leave a rank waiting. Validation is computed on rank 0 and broadcast, so early
stopping and the weight average decide the same on every rank.

Embedding tables with sparse gradients (``ctr.train.sparse_updates``) are left out of DDP: its
reducer would all-reduce them as sparse tensors bucket by bucket. Instead each step all-gathers
the rows every rank used and sums them into one coalesced sparse gradient per table
(:meth:`DataParallel.reduce`), whose cost follows the batches' rows, never the tables' size. The
other parameters' gradients (DDP's buckets, left unreduced by a communication hook) travel in the
same all-gather: one collective a step, where DDP's all-reduce then a separate all-gather made
every rank wait for the others twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mimrec.csft.distributed import is_distributed
from mimrec.ctr.sparse_updates import coalesce_rows


@dataclass
class DataParallel:
    """This rank's part of a data-parallel training run.

    Args:
        module: the DDP wrapper of the model (its backward all-reduces the gradients, or with
            sparse tables leaves them to :meth:`reduce`).
        rank: this process's rank.
        world: number of ranks.
        rows: train rows over all ranks.
    """

    module: DistributedDataParallel
    rank: int
    world: int
    rows: int
    capacity: int = 0  # bytes a rank sends in the step's all-gather of gradients
    deferred: _DeferredBuckets | None = None  # DDP's dense buckets, reduced in reduce()

    @classmethod
    def wrap(cls, model: nn.Module, local_rows: int,
             sparse_tables: list[nn.Embedding] | tuple = ()) -> DataParallel | None:
        """Wrap ``model`` when a process group of several ranks runs; None otherwise (then
        training is the one-process loop, unchanged). ``sparse_tables`` are kept out of DDP
        (rank 0's weights are broadcast here; :meth:`reduce` reduces their gradients, and then
        the other parameters' too)."""
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
        deferred = _DeferredBuckets() if sparse_tables else None
        ddp = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=deferred is not None)
        if deferred is not None:  # the dense gradients travel in the sparse rows' all-gather
            ddp.register_comm_hook(deferred, _DeferredBuckets.hook)
        # DDP broadcasts rank 0's buffers (batch-norm statistics, and the model's constant
        # index tables, which grow with the catalogue) before every forward: a collective and a
        # wait for rank 0 each step. Training reads none of them (batch norm normalises by the
        # batch's statistics in train mode), so they are broadcast once at each epoch's end
        # instead (sync_buffers). Set after construction: the weights and buffers are still
        # broadcast once at the start, and the attribute exists in every torch version.
        ddp.broadcast_buffers = False
        return cls(ddp, dist.get_rank(), dist.get_world_size(), total_rows(local_rows, device),
                   deferred=deferred)

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

    def reduce(self, tables: list[nn.Embedding]) -> None:
        """After a step's backward: replace each sparse table's gradient by the mean over
        ranks, coalesced, and (when the model has sparse tables) the other parameters'
        gradients, which DDP left to this step, by their mean, all from one all-gather of every
        rank's dense buckets and coalesced rows. Call it every step, between the backward pass
        and the optimiser's step."""
        if self.deferred is None and not tables:
            return  # DDP all-reduced every gradient in the backward pass
        buckets = self.deferred.take() if self.deferred is not None else []
        self.capacity = reduce_sparse_gradients(
            tables, self.world, _comm_device(self._device()), self.capacity,
            [b.buffer for b in buckets])
        for bucket in buckets:
            bucket.write_back()

    @torch.no_grad()
    def sync_buffers(self, *modules: nn.Module | None) -> None:
        """Rank 0's buffers (batch-norm statistics) in each of ``modules`` on every rank (None:
        skipped): at an epoch's end, so that every rank holds rank 0's model (rank 0's own
        buffers never depend on another rank's: DDP's broadcast before each forward, which
        this replaces, only ever sent rank 0's to the others)."""
        comm = _comm_device(self._device())
        for module in modules:
            for buffer in module.buffers() if module is not None else ():
                synced = buffer.to(comm)
                dist.broadcast(synced, src=0)
                buffer.copy_(synced)

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        out = torch.tensor([value], dtype=torch.float64, device=_comm_device(self._device()))
        dist.broadcast(out, src=0)
        return float(out.item())

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device


@torch.no_grad()
def reduce_sparse_gradients(tables: list[nn.Embedding], world: int, comm: torch.device,
                            capacity: int = 0, dense: list[torch.Tensor] | tuple = ()) -> int:
    """All-gather the rows of the tables' sparse gradients over ``world`` ranks and set each
    table's gradient to their sum / ``world``, coalesced (a table without a gradient on a rank
    adds no rows); each of the ``dense`` tensors (the same shapes on every rank) becomes the
    sum of the ranks' / ``world``, in place, summed in rank order. Returns the capacity to pass
    at the next step.

    Each rank packs its row counts, dense tensors, row indices and values into one byte buffer of
    ``capacity`` bytes (every rank passes the same ``capacity``), so a step is one all-gather.
    A rank whose rows do not fit sends its counts and its size only; then every rank sees that
    in the gathered headers, and all gather again at a capacity that fits (one eighth more than
    the largest rank's size, kept for the next steps). The gathered rows are the same as with
    one buffer per rank of the exact size, so the result does not depend on ``capacity``."""
    grads = [coalesce_rows(t.weight.grad) if t.weight.grad is not None else None
             for t in tables]
    dims = [t.weight.shape[1] for t in tables]
    dtype, device = tables[0].weight.dtype, tables[0].weight.device
    counts = [g._nnz() if g is not None else 0 for g in grads]
    rows = [g._indices()[0] for g in grads if g is not None]
    values = [g._values().reshape(-1).to(dtype) for g in grads if g is not None]
    head = 8 * (1 + len(tables))  # int64: this rank's size in bytes, then the row counts
    dense_bytes = [t.numel() * t.dtype.itemsize for t in dense]
    body = head + sum(dense_bytes) + -sum(dense_bytes) % 8  # rows start 8-byte aligned
    size = body + 8 * sum(counts) + dtype.itemsize * sum(c * d for c, d in zip(counts, dims,
                                                                                strict=True))
    size += -size % 8  # every rank's buffer starts 8-byte aligned
    header = torch.tensor([size, *counts], dtype=torch.int64, device=device)
    full = torch.cat([header.view(torch.uint8),
                      *[t.detach().reshape(-1).view(torch.uint8).to(device) for t in dense],
                      torch.zeros(body - head - sum(dense_bytes), dtype=torch.uint8,
                                  device=device),
                      *[r.to(torch.int64).view(torch.uint8) for r in rows],
                      *[v.view(torch.uint8) for v in values]])
    capacity = max(capacity, head)
    gathered = _gather_bytes(full, capacity, world, comm)
    needed = max(int(part[:8].view(torch.int64)) for part in gathered)
    if needed > capacity:  # some rank's rows did not fit: gather again, all of them
        capacity = needed + needed // 8
        capacity += -capacity % 8
        gathered = _gather_bytes(full, capacity, world, comm)
    at = head
    for t, n in zip(dense, dense_bytes, strict=True):
        flat = t.detach().view(-1)
        mean = sum(part[at:at + n].view(t.dtype).to(t.device) for part in gathered) / world
        flat.copy_(mean)
        at += n
    per_rank = torch.stack([part[8:head].view(torch.int64).cpu() for part in gathered])
    sizes = per_rank * torch.tensor(dims, dtype=torch.int64)  # (world, tables) values
    # where table i's rows and values start in rank r's buffer: (world, tables), in bytes; as
    # Python lists (read element by element below: a tensor element costs an op each)
    starts = (body + 8 * (per_rank.cumsum(1) - per_rank)).tolist()
    vstarts = (body + 8 * per_rank.sum(1, keepdim=True)
               + dtype.itemsize * (sizes.cumsum(1) - sizes)).tolist()
    counts_of = per_rank.tolist()
    for i, (table, d) in enumerate(zip(tables, dims, strict=True)):
        parts_rows, parts_values = [], []
        for r, part in enumerate(gathered):
            start, vstart, n = starts[r][i], vstarts[r][i], counts_of[r][i]
            parts_rows.append(part[start:start + 8 * n].view(torch.int64).to(device))
            parts_values.append(part[vstart:vstart + dtype.itemsize * n * d].view(dtype)
                                .to(device).view(n, d))
        summed = coalesce_rows(torch.sparse_coo_tensor(torch.cat(parts_rows).unsqueeze(0),
                                                       torch.cat(parts_values) / world,
                                                       table.weight.shape))
        table.weight.grad = summed
    return capacity


class _DeferredBuckets:
    """A DDP communication hook that leaves each gradient bucket unreduced and keeps it for
    :meth:`DataParallel.reduce`, which sends it in the step's one all-gather together with the
    sparse tables' rows. Without it a step waits twice for the other ranks: for DDP's all-reduce
    at the end of the backward pass, then for the sparse rows' all-gather."""

    @dataclass
    class Bucket:
        """One bucket of a step: its flat buffer, the gradients' views into it and the
        parameters whose gradients they are."""

        buffer: torch.Tensor
        views: list[torch.Tensor]
        params: list[nn.Parameter]

        def write_back(self) -> None:
            """Give each parameter its reduced gradient (with ``gradient_as_bucket_view`` the
            gradients are the views already; otherwise DDP copied the unreduced ones)."""
            for view, param in zip(self.views, self.params, strict=True):
                if param.grad is not None and param.grad.data_ptr() != view.data_ptr():
                    param.grad.copy_(view.view_as(param.grad))

    def __init__(self) -> None:
        self.buckets: dict[int, _DeferredBuckets.Bucket] = {}

    @staticmethod
    def hook(state: _DeferredBuckets, bucket):  # noqa: ANN001, ANN205
        """DDP's hook: keep the bucket (a ``dist.GradBucket``), hand it back unreduced (a
        ``torch.futures.Future[torch.Tensor]``). Unannotated: DDP checks the annotations of a
        hook against those types, and this module's annotations are strings."""
        state.buckets[bucket.index()] = _DeferredBuckets.Bucket(
            bucket.buffer(), list(bucket.gradients()), list(bucket.parameters()))
        done: torch.futures.Future = torch.futures.Future()
        done.set_result(bucket.buffer())
        return done

    def take(self) -> list[_DeferredBuckets.Bucket]:
        """This step's buckets in bucket order (the same on every rank), forgotten here."""
        buckets = [self.buckets[i] for i in sorted(self.buckets)]
        self.buckets = {}
        return buckets


def _gather_bytes(full: torch.Tensor, capacity: int, world: int, comm: torch.device
                  ) -> list[torch.Tensor]:
    """Every rank's ``full`` (bytes) in buffers of ``capacity`` bytes: the whole of it when it
    fits, else its first 8 bytes (its size) and the header up to ``capacity``."""
    send = torch.zeros(capacity, dtype=torch.uint8, device=comm)
    fits = min(len(full), capacity)
    send[:fits] = full[:fits].to(comm)
    out = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(out, send)
    return out


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
