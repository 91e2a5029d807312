"""Training of a CTR model: Adam on the task's loss, early stopping on valid AUC, best restored."""

from __future__ import annotations

import copy
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from mimrec.ctr.config import TrainConfig
from mimrec.ctr.data_parallel import DataParallel
from mimrec.ctr.model import CiUBM
from mimrec.ctr.modules import take_rows
from mimrec.ctr.sparse_updates import add_row_l2, make_optimizer
from mimrec.ctr.task import CtrTask
from mimrec.ctr.weight_average import WeightAverage
from mimrec.data.samples import Samples
from mimrec.eval.streaming import split_auc


@dataclass
class Histories:
    """Compact behaviour histories of N samples that index like an (N, L) tensor.

    ``histories[idx]`` gathers the (B, L) model indices of the rows ``idx`` (catalogue row + 1,
    0 = padding on the left, most recent last) from the stored sequences; the (N, L) matrix is
    never built. Shapes: ``seq_items`` (P,) catalogue rows, ``end`` (N,), ``length`` (N,).
    """

    seq_items: torch.Tensor
    end: torch.Tensor
    length: torch.Tensor
    max_len: int

    def __len__(self) -> int:
        return len(self.end)

    def __getitem__(self, idx) -> torch.Tensor:
        end, length = take_rows(self.end, idx), take_rows(self.length, idx)
        steps = torch.arange(self.max_len, 0, -1)
        pos = end.unsqueeze(1) - steps  # (B, L)
        valid = steps <= length.unsqueeze(1)
        if not len(self.seq_items):
            return torch.zeros(pos.shape, dtype=torch.int64)
        return torch.where(valid, take_rows(self.seq_items, pos.clamp(min=0)) + 1, 0)


@dataclass
class Batchable:
    """Model inputs of one split as tensors in model index space (0 = padding / unknown).

    Shapes: ``user`` (N,), ``item`` (N,), ``history`` (N, L) (a dense tensor or compact
    :class:`Histories`), ``label`` (N,). ``offset`` is added to ``user`` and ``item`` when a batch
    is taken: :func:`batchable` keeps the data artifact's catalogue rows (model index - 1) as they
    are, often as views of its arrays, instead of a shifted copy of every row.
    """

    user: torch.Tensor
    item: torch.Tensor
    history: torch.Tensor | Histories
    label: torch.Tensor
    offset: int = 0

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        user = take_rows(self.user, idx) + self.offset
        item = take_rows(self.item, idx) + self.offset
        history = (self.history[idx] if isinstance(self.history, Histories)
                   else take_rows(self.history, idx))
        return tuple(t.to(device, non_blocking=True)
                     for t in (user, item, history, take_rows(self.label, idx)))

    def model_items(self) -> torch.Tensor:
        """Every sample's target item, as a model index. Shapes: (N,)."""
        return self.item + self.offset

    def shard(self, rank: int, world: int) -> Batchable:
        """The rows ``rank::world`` (a data-parallel rank's own share of train)."""
        return self.subset(torch.arange(rank, len(self), world))

    def subset(self, rows: torch.Tensor) -> Batchable:
        """The samples ``rows`` (indices), in that order."""
        history = self.history
        if isinstance(history, Histories):
            history = Histories(history.seq_items, history.end[rows], history.length[rows],
                                history.max_len)
        else:
            history = history[rows]
        return Batchable(self.user[rows], self.item[rows], history, self.label[rows],
                         self.offset)


def batchable(samples: Samples, split: int) -> Batchable:
    """Tensors of one split; catalogue rows r become model indices r + 1 (-1 padding -> 0) as
    batches are taken. A split whose rows are one contiguous range (P1 order at any size) is
    read as views of the samples' arrays: no copy of the split is made."""
    rows: slice | np.ndarray = np.flatnonzero(samples.split == split)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        rows = slice(int(rows[0]), int(rows[-1]) + 1)

    def tensor(values: np.ndarray) -> torch.Tensor:
        # a view of a read-only memory map; batches are only ever read from it, never written
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.as_tensor(values[rows])

    return Batchable(
        user=tensor(samples.user),
        item=tensor(samples.item),
        history=Histories(torch.as_tensor(samples.seq_items), tensor(samples.hist_end),
                          tensor(samples.hist_len), samples.max_seq_len),
        label=torch.as_tensor(samples.label[rows], dtype=torch.float32),
        offset=1,
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; under torchrun the GPU is ``LOCAL_RANK``'s."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; optionally make torch's kernels deterministic.

    Deterministic mode matters on the CPU too: the multi-threaded scatter-add behind embedding
    gradients otherwise sums in a varying order, and two runs with one seed drift apart.
    Deterministic mode would also fill every new uninitialised tensor with NaN (a debugging aid
    that changes no result: kernels write their outputs before anything reads them); that costs
    a write of every activation each step, so it is turned off.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


@torch.inference_mode()
def predict(model: CiUBM, data: Batchable, batch_size: int = 4096,
            out: np.ndarray | None = None) -> np.ndarray:
    """Click probabilities for every sample of ``data``, in order (catalogue tables computed
    once for all batches). ``out``: a (N,) float32 array (a memory map of a large split) that
    each batch is written into and that is returned, instead of one array built in memory."""
    model.eval()
    device = next(model.parameters()).device
    tables = model.catalogue_tables()
    parts = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        user, item, history, _ = data.take(idx, device)
        probs = torch.sigmoid(model(user, item, history, tables=tables)).float().cpu()
        if out is None:
            parts.append(probs)
        else:
            out[start:start + len(probs)] = probs.numpy()
    return out if out is not None else torch.cat(parts).numpy()


def train_epoch(model: CiUBM, data: Batchable, opt: torch.optim.Optimizer,
                cfg: TrainConfig, progress: Progress | None, epoch: int,
                ema: WeightAverage | None = None, parallel: DataParallel | None = None) -> float:
    """One pass over ``data`` in a random order; returns the mean BCE loss. ``ema``, when
    given, is updated after every step. With ``parallel``, ``data`` is this rank's shard and
    each step is this rank's part of a global batch (:mod:`mimrec.ctr.data_parallel`). Embedding
    tables with sparse gradients (``ctr.train.sparse_updates``, :mod:`mimrec.ctr.sparse_updates`)
    take the L2 penalty on the rows each step uses, not on the whole table."""
    model.train()
    device = next(model.parameters()).device
    rows = parallel.rows if parallel else len(data)
    order = parallel.epoch_order() if parallel else torch.randperm(len(data))
    sparse = [t for t in model.embeddings() if t.sparse and t.weight.requires_grad]
    task = CtrTask(0.0 if sparse else cfg.embedding_l2)
    total, steps = 0.0, 0
    bar = progress.add_task(f"epoch {epoch}", total=rows) if progress else None
    for start in range(0, rows, cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        if parallel is None:
            loss, bce = task.loss(model, *data.take(idx, device))
        else:
            local, weight, scale = parallel.local_batch(idx)
            loss, bce = task.loss(model, *data.take(local, device), forward=parallel.module,
                                  weight=weight.to(device), scale=scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if parallel is not None:
            parallel.reduce(sparse)
        if sparse:
            add_row_l2(sparse, cfg.embedding_l2)
            if ema is not None:
                ema.before_step()
        opt.step()
        if ema is not None:
            ema.update()
        total, steps = total + bce.item(), steps + 1
        if progress:
            progress.update(bar, advance=len(idx))
    if parallel is not None:
        parallel.sync_buffers(model, ema.module if ema is not None else None)
    if progress:
        progress.remove_task(bar)
    return total / max(steps, 1)


EpochCallback = Callable[[dict], None]


class FitCheckpoint(Protocol):
    """Where :func:`fit` keeps its state after each epoch (:class:`mimrec.ctr.checkpoint.ModelCheckpoint`)."""

    def save(self, state: dict[str, Any]) -> None: ...

    def load(self) -> dict[str, Any] | None: ...


@dataclass
class FitProgress:
    """Early stopping's state between epochs: the last finished epoch, the best valid AUC and a
    copy of its weights, epochs since it, the history so far and seconds spent."""

    epoch: int = 0
    best_auc: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    since_best: int = 0
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def rng_states() -> dict[str, Any]:
    """The states of every random number generator training draws from (torch, CUDA, numpy,
    Python), as tensors and lists (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": list(random.getstate())}


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def training_state(model: nn.Module, opt: torch.optim.Optimizer, ema: WeightAverage | None,
                   done: FitProgress) -> dict[str, Any]:
    """Everything :func:`fit` needs to go on after ``done.epoch`` as if never stopped."""
    return {"epoch": done.epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else {},
            "ema_updates": ema.updates if ema is not None else 0,
            "best_auc": done.best_auc, "best_state": done.best_state or {},
            "since_best": done.since_best, "log": done.log, "seconds": done.seconds,
            "rng": rng_states()}


def restore_training_state(state: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
                           ema: WeightAverage | None) -> FitProgress:
    """Load a :func:`training_state` into the model, optimiser and weight average."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
        ema.resumed(state["ema_updates"])
    set_rng_states(state["rng"])
    return FitProgress(state["epoch"], state["best_auc"], state["best_state"] or None,
                       state["since_best"], list(state["log"]), state["seconds"])


def fit(model: CiUBM, train: Batchable, valid: Batchable, cfg: TrainConfig,
        progress: Progress | None = None, judge_start: bool = False,
        on_epoch: EpochCallback | None = None,
        checkpoint: FitCheckpoint | None = None) -> list[dict]:
    """Train with early stopping on valid AUC; the best epoch's weights are restored in place.

    With ``cfg.ema_decay > 0`` the weights judged on valid (and restored) are an exponential
    moving average of the trained weights, batch-norm statistics included. With
    ``judge_start`` the starting weights are a candidate too (epoch 0): a model that starts
    from a trained one ends no worse than it on valid. Only parameters that require gradients
    are trained. ``on_epoch``, when given, receives each epoch's record as soon as it is known.
    With a ``checkpoint``, the state after each epoch that training goes on from is saved
    there, and a saved state is resumed from: the result equals an uninterrupted run's (the
    random number generators are saved too); the epochs of the saved history are handed to
    ``on_epoch`` again, marked ``resumed``. Under torchrun (a process group of several ranks)
    ``train`` is this rank's shard and the model trains wrapped in DDP
    (:mod:`mimrec.ctr.data_parallel`); rank 0 judges on valid and saves checkpoints.

    Returns one record per epoch: ``epoch``, ``train_loss``, ``valid_auc``, ``seconds`` (since
    the start of training).
    """
    opt, sparse_tables = make_optimizer(model, cfg.lr, cfg.sparse_updates)
    parallel = DataParallel.wrap(model, len(train), sparse_tables)  # None on one process
    lead = parallel is None or parallel.rank == 0
    ema = WeightAverage(model, cfg.ema_decay, sparse_tables) if cfg.ema_decay > 0 else None
    judged = ema.module if ema is not None else model
    saved = checkpoint.load() if checkpoint is not None else None
    done = FitProgress() if saved is None else restore_training_state(saved, model, opt, ema)
    start = time.perf_counter() - done.seconds
    if on_epoch is not None:
        for rec in done.log:
            on_epoch({**rec, "resumed": True})

    def record(epoch: int, loss: float | None, valid_auc: float) -> None:
        done.log.append({"epoch": epoch, "train_loss": loss, "valid_auc": valid_auc,
                         "seconds": time.perf_counter() - start})
        if on_epoch is not None:
            on_epoch(dict(done.log[-1]))

    def judge(module: nn.Module) -> float:  # on rank 0, the same number on every rank
        value = split_auc(valid.label.numpy(), predict(module, valid)) if lead else 0.0
        return parallel.agree(value) if parallel else value

    if judge_start and saved is None:
        done.best_auc = judge(model)
        done.best_state = copy.deepcopy(model.state_dict())
        record(0, None, done.best_auc)
    for epoch in range(done.epoch + 1, cfg.max_epochs + 1):
        loss = train_epoch(model, train, opt, cfg, progress, epoch, ema, parallel)
        if ema is not None:
            ema.sync()
        valid_auc = judge(judged)
        record(epoch, loss, valid_auc)
        if valid_auc > done.best_auc:
            done.best_auc, done.since_best = valid_auc, 0
            done.best_state = copy.deepcopy(judged.state_dict())
        else:
            done.since_best += 1
            if done.since_best >= cfg.patience:
                break
        if checkpoint is not None and lead and epoch < cfg.max_epochs:
            done.epoch, done.seconds = epoch, time.perf_counter() - start
            checkpoint.save(training_state(model, opt, ema, done))
    if done.best_state is not None:
        model.load_state_dict(done.best_state)
    return done.log
