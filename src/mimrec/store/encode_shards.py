"""The index stage's encoding at catalogue scale: the items are encoded in shards of
``shard_items`` rows, each written to its own ``.npy`` file (through a temporary name and a
rename) in a folder beside the index artifact, ``RUN/.index-shards/<source>-<key>``.

- **Resumable.** A killed ``mimrec index`` leaves the finished shards; the rerun reuses every
  shard whose file is complete and encodes only the rest. ``key`` hashes what the vectors depend
  on (the encoder's identity, the item ids in order, the shard size), so a changed encoder or
  catalogue never reuses stale shards. The folder is removed once the store is written.
- **Split across workers.** Under ``torchrun`` worker ``r`` of ``W`` encodes shards ``r, r + W,
  ...``; all wait at a barrier, then worker 0 reads every shard and writes the store.
- **Watchable.** A progress bar per source with items/s and the time left; the returned
  :class:`ShardedRun` says how many shards were reused and the rate measured.

Memory: the encoder, one shard's batch, and at the end the (N, D) float32 vectors (once).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mimrec.csft.distributed import barrier, rank, world_size

SHARD_ITEMS = 16_384  # rows per shard: a few seconds of encoding each, a small loss on a kill
SHARDS_DIR = ".index-shards"  # in the run folder, beside the index artifact


@dataclass(frozen=True)
class ShardedRun:
    """What :func:`encode_in_shards` did (this worker's share): items encoded now, its shards
    and how many were reused, seconds; kept in the index manifest as :meth:`record`."""

    encoded: int
    shards: int
    reused: int
    seconds: float

    @property
    def items_per_second(self) -> float:
        """Items encoded now per second of this worker (NaN when nothing was encoded)."""
        return self.encoded / self.seconds if self.encoded and self.seconds > 0 else float("nan")

    def record(self) -> dict:
        """The manifest's ``encoding`` entry (:meth:`from_record` reads it back)."""
        return {**asdict(self), "items_per_second": self.items_per_second}

    @classmethod
    def from_record(cls, record: dict) -> ShardedRun:
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    def line(self, name: str) -> str:
        """``raw: 1,682 items encoded in 3.1 s (543 items/s); 0 of 1 shards reused``."""
        rate = (f" ({self.items_per_second:,.0f} items/s)" if self.encoded else "")
        return (f"{name}: {self.encoded:,} items encoded in {self.seconds:.1f} s{rate}; "
                f"{self.reused} of {self.shards} shards reused")


def shard_folder(root: Path, name: str, identity: str, ids: np.ndarray,
                 shard_items: int = SHARD_ITEMS) -> Path:
    """The shard folder of source ``name``: ``root/<name>-<key>``, ``key`` a hash of the encoder's
    ``identity``, the item ids (in order) and the shard size."""
    digest = hashlib.sha256()
    digest.update(identity.encode())
    digest.update(str(shard_items).encode())
    for item in np.asarray(ids).astype(str):
        digest.update(item.encode("utf-8", "surrogatepass") + b"\0")
    return Path(root) / f"{name}-{digest.hexdigest()[:16]}"


def _shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:06d}.npy"


def _finished(path: Path, rows: int) -> bool:
    """Whether ``path`` holds a complete shard of ``rows`` rows (a torn file is redone)."""
    if not path.is_file():
        return False
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return False
    return array.ndim == 2 and array.shape[0] == rows


def _write_shard(path: Path, vectors: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npy")
    np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    os.replace(tmp, path)


def encode_in_shards(encode: Callable[[pd.DataFrame], np.ndarray], items: pd.DataFrame,
                     folder: Path, label: str, shard_items: int = SHARD_ITEMS,
                     console: Console | None = None,
                     on_shard: Callable[[int], None] | None = None
                     ) -> tuple[np.ndarray | None, ShardedRun]:
    """Encode ``items`` in shards under ``folder``; returns ((N, D) vectors, what was done).

    Args:
        encode: items table -> (rows, D) vectors of those rows, in order.
        items: the catalogue (every column ``encode`` reads).
        folder: this source's shard folder (:func:`shard_folder`); made if missing.
        label: the progress bar's name for the source.
        shard_items: rows per shard.
        console: where the progress bar goes (None: stderr).
        on_shard: called with each shard's number after it is written (tests stop a run here).

    Under ``torchrun`` each worker encodes its share; every worker returns after the barrier,
    worker 0 with the vectors, the others with None.
    """
    n = len(items)
    shards = max(math.ceil(n / shard_items), 1)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [(k * shard_items, min((k + 1) * shard_items, n)) for k in range(shards)]
    mine = [k for k in range(shards) if k % world_size() == rank()]
    todo = [k for k in mine if not _finished(_shard_path(folder, k), bounds[k][1] - bounds[k][0])]
    encoded = sum(bounds[k][1] - bounds[k][0] for k in todo)
    start = time.perf_counter()
    columns = (TextColumn("  index {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("items"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=True,
                  disable=not todo) as bar:
        task = bar.add_task(label, total=encoded, rate="")
        for k in todo:
            lo, hi = bounds[k]
            vectors = encode(items.iloc[lo:hi])
            _write_shard(_shard_path(folder, k), vectors)
            elapsed = time.perf_counter() - start
            bar.advance(task, hi - lo)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / elapsed:,.0f}/s" if elapsed > 0 else "")
            if on_shard is not None:
                on_shard(k)
    seconds = time.perf_counter() - start
    run = ShardedRun(encoded=encoded, shards=len(mine), reused=len(mine) - len(todo),
                     seconds=seconds)
    barrier()
    if rank() != 0:
        return None, run
    return read_shards(folder, bounds), run


def read_shards(folder: Path, bounds: list[tuple[int, int]]) -> np.ndarray:
    """The shards' vectors in one (N, D) float32 array, each shard read into its rows (no list
    of parts and no concatenated copy: the vectors are held once)."""
    first = np.load(_shard_path(folder, 0), mmap_mode="r")
    vectors = np.empty((bounds[-1][1], first.shape[1]), np.float32)
    for k, (lo, hi) in enumerate(bounds):
        vectors[lo:hi] = np.load(_shard_path(folder, k), mmap_mode="r")
    return vectors


def remove_shards(root: Path) -> None:
    """Remove the shard folders once the index artifact is written (worker 0)."""
    shutil.rmtree(root, ignore_errors=True)
