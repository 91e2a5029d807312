"""Training you can watch: every CTR model's epochs as one line each on the console, whether the
model trains in this process or in a worker process.

A worker sends ``(model key, epoch record)`` through a queue handed to it when the pool starts
(:func:`init_worker`); the parent drains the queue while it waits for results
(:class:`EpochLines`), so lines appear as epochs end, not when a model is done. With
``ctr.train.tensorboard`` on, the same records also go to TensorBoard event files, one run per
model under ``RUN/logs/tensorboard/<model key>`` (:class:`TensorBoardEpochs`; ``tensorboard
--logdir RUN/logs/tensorboard`` shows the curves).
"""

from __future__ import annotations

import math
import queue
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from rich.console import Console

from mimrec.errors import MimrecError
from mimrec.processes import die_with_parent

_EVENTS: Queue | None = None  # set in a worker process by init_worker
TENSORBOARD = Path("logs") / "tensorboard"  # in the run folder


def init_worker(parent_pid: int, events: Queue) -> None:
    """Process-pool initializer: die with the parent, send epoch records to ``events``."""
    global _EVENTS
    die_with_parent(parent_pid)
    _EVENTS = events


def send_epoch(key: str, record: dict) -> None:
    """In a worker: send one epoch record of model ``key`` to the parent (no-op elsewhere)."""
    if _EVENTS is not None:
        _EVENTS.put((key, record))


def epoch_line(key: str, record: dict, max_epochs: int) -> str:
    """``din-seed0 epoch 3/20: train loss 0.5123, valid AUC 0.7012 (41s)``; epoch 0 is the
    starting weights of a model that starts from another (no training loss); an epoch of a
    resumed model's saved history ends in ``(from checkpoint)``."""
    loss = record.get("train_loss")
    loss_text = "starting weights" if loss is None else f"train loss {loss:.4f}"
    auc = record["valid_auc"]
    auc_text = f"{auc:.4f}" if math.isfinite(auc) else "n/a"
    seconds = record.get("seconds")
    tail = f" ({seconds:.0f}s)" if seconds is not None else ""
    if record.get("resumed"):
        tail += " (from checkpoint)"
    return f"  {key} epoch {record['epoch']}/{max_epochs}: {loss_text}, valid AUC {auc_text}{tail}"


class TensorBoardEpochs:
    """Writes epoch records as TensorBoard scalars (``train/loss``, ``valid/auc``, step = epoch),
    one event-file folder per model key under ``folder``.

    Args:
        folder: the TensorBoard log folder (``RUN/logs/tensorboard``).

    Raises:
        MimrecError: the ``tensorboard`` package is not installed (the ``watch`` extra).
    """

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MimrecError("ctr.train.tensorboard is on but the tensorboard package is not "
                              "installed: pip install 'mimrec[watch]' (or switch it off)") from None
        self.folder = folder
        self._writer_class = SummaryWriter
        self.writers: dict[str, Any] = {}

    def __call__(self, key: str, record: dict) -> None:
        """Write one epoch record of model ``key``."""
        writer = self.writers.get(key)
        if writer is None:
            writer = self.writers[key] = self._writer_class(str(self.folder / key))
        step = int(record["epoch"])
        if record.get("train_loss") is not None:
            writer.add_scalar("train/loss", float(record["train_loss"]), step)
        if math.isfinite(record["valid_auc"]):
            writer.add_scalar("valid/auc", float(record["valid_auc"]), step)
        writer.flush()

    def close(self, key: str | None = None) -> None:
        """Close the writer of ``key`` (every writer when None)."""
        for k in [key] if key is not None else list(self.writers):
            writer = self.writers.pop(k, None)
            if writer is not None:
                writer.close()


class EpochLines:
    """Prints epoch records on a console as they arrive, from this process or from workers.

    Args:
        console: where lines go (a console that also writes the run's log file logs them).
        max_epochs: the configured bound, shown as ``epoch k/max``.
        tensorboard: where the records also go as TensorBoard scalars (None = nowhere).
    """

    def __init__(self, console: Console, max_epochs: int,
                 tensorboard: TensorBoardEpochs | None = None) -> None:
        self.console = console
        self.max_epochs = max_epochs
        self.tensorboard = tensorboard
        self.seen: dict[str, int] = {}
        self.closed: set[str] = set()

    def __call__(self, key: str, record: dict) -> None:
        """Print one epoch record of model ``key`` (records of a finished model are dropped)."""
        if key in self.closed:
            return
        self.seen[key] = self.seen.get(key, 0) + 1
        self.console.print(epoch_line(key, record, self.max_epochs), highlight=False)
        if self.tensorboard is not None and not record.get("resumed"):  # written before
            self.tensorboard(key, record)

    def close(self) -> None:
        """Close every TensorBoard writer (the end of a training run)."""
        if self.tensorboard is not None:
            self.tensorboard.close()

    def drain(self, events: Queue) -> None:
        """Print every record waiting in ``events`` without blocking."""
        while True:
            try:
                key, record = events.get_nowait()
            except queue.Empty:
                return
            self(key, record)

    def finish(self, key: str, epochs: int, events: Queue, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout`` seconds) until all ``epochs`` records of ``key`` are printed
        (a worker's result may overtake its last records on the way), then close ``key``."""
        deadline = time.monotonic() + timeout
        while self.seen.get(key, 0) < epochs and time.monotonic() < deadline:
            try:
                got, record = events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            self(got, record)
        self.closed.add(key)
        if self.tensorboard is not None:
            self.tensorboard.close(key)
