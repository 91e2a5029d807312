"""``mimrec run`` under torchrun: one process group for the whole run; the stages that are not
distributed (data, pretrain, the run config, eval) run on rank 0 while the other ranks wait,
C-SFT and the index share their work as they do under ``torchrun -m mimrec csft / index``, and
CTR training is DistributedDataParallel (:mod:`mimrec.ctr.data_parallel`).

The group uses gloo on CPUs, and on GPUs ``cpu:gloo,cuda:nccl`` (collectives on CUDA tensors go
to NCCL, those on CPU tensors to gloo). The other ranks wait for a rank-0 stage on a separate
gloo group with a long timeout (the data stage of a large log takes longer than the default
30 minutes); rank 0 then broadcasts whether the stage succeeded, so a failed stage ends every
rank with a message instead of leaving them waiting. Without torchrun (``WORLD_SIZE`` unset or
1) every stage simply runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mimrec.errors import MimrecError
from mimrec.processes import end_with_launcher
from mimrec.runtime import launched_by_torchrun

WAIT_TIMEOUT = timedelta(days=2)  # how long the other ranks wait for one rank-0 stage


class RankStages:
    """Runs a pipeline's stages on the ranks of one process group (or alone: ``wait`` None).

    Args:
        wait: the gloo group the other ranks wait on while rank 0 runs a stage; None outside
            torchrun.
    """

    def __init__(self, wait: Any = None) -> None:
        self.wait = wait
        self.rank = dist.get_rank() if wait is not None else 0

    def lead(self, name: str, stage: Callable[..., Any], *args: Any) -> Any:
        """Run ``stage(*args)`` on rank 0 only; the other ranks wait until it has finished and
        raise :class:`MimrecError` if it failed. Returns its result (None on other ranks)."""
        if self.wait is None:
            return stage(*args)
        result, error = None, None
        if self.rank == 0:
            try:
                result = stage(*args)
            except BaseException as e:  # noqa: BLE001 - the other ranks must hear of it first
                error = e
        ok = torch.tensor([0 if error is not None else 1], dtype=torch.int64)
        dist.broadcast(ok, src=0, group=self.wait)
        if error is not None:
            raise error
        if not ok.item():
            raise MimrecError(f"rank {self.rank}: stopped because rank 0 failed in the {name} "
                              "stage (its message is above)")
        return result

    def all(self, stage: Callable[..., Any], *args: Any) -> Any:
        """Run ``stage(*args)`` on every rank (a stage that shares its work over the group)."""
        return stage(*args)


@contextmanager
def rank_stages(device: str) -> Iterator[RankStages]:
    """Join torchrun's process group for a whole ``mimrec run`` (``device``: the CTR device;
    ``cuda`` adds NCCL for CUDA tensors); without torchrun, a :class:`RankStages` that runs
    every stage here. A rank ends with its launcher, even by ``kill -9``."""
    end_with_launcher()
    if not launched_by_torchrun() or dist.is_initialized():
        yield RankStages()
        return
    backend = "cpu:gloo,cuda:nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend)
    try:
        yield RankStages(dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT))
    finally:
        dist.destroy_process_group()
