"""Samples on disk as shards: per-event columns in parquet files of at most ``shard_rows`` rows,
the stored sequences and the per-item / per-user arrays beside them.

Folder layout (``data/samples/``): ``events-00000.parquet ...`` (``split``, ``user``, ``item``,
``timestamp``, ``label``, ``hist_end``, ``hist_len``, ``bucket``, ``click_probability``; rows in
P1 event order, so shard ``k`` holds rows ``k * shard_rows ...``), ``sequences.npy``
(``seq_items``) and ``catalogue.npz`` (``item_train_count``, ``new_item``, ``user_ids``, the
popularity buckets' ``bucket_lows``, ``bucket_names``, ``bucket_notes``, ``max_seq_len``). No
pickled objects. A reader can take one shard (a rank of a distributed run)
or all; reading all loads one column at a time, so memory peaks near the arrays themselves.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mimrec.data.samples import Samples
from mimrec.errors import DataError
from mimrec.runtime import run_threaded

EVENT_COLUMNS = ("split", "user", "item", "timestamp", "label", "hist_end", "hist_len", "bucket",
                 "click_probability")
CATALOGUE = ("item_train_count", "new_item", "user_ids", "bucket_lows", "bucket_names",
             "bucket_notes")
SHARD_ROWS = 4_000_000
# columns of a few distinct values; a dictionary of the others (ids, pointers, times) is a waste
# of writing time (measured: a third of a 4M-row shard's write)
DICTIONARY_COLUMNS = ["split", "label", "hist_len", "bucket", "click_probability"]


def write_samples(samples: Samples, folder: Path, shard_rows: int = SHARD_ROWS) -> None:
    """Write ``samples`` into ``folder`` (created; the caller's stage folder is temporary).
    Shards are encoded on several threads at once (:func:`~mimrec.runtime.run_threaded`:
    parquet's writer releases the GIL; each shard's columns are views of the samples' arrays,
    so no copy is made)."""
    folder.mkdir(parents=True)
    n = len(samples.split)

    def write_shard(shard: int) -> None:
        start = shard * shard_rows
        table = pa.table({k: getattr(samples, k)[start:start + shard_rows]
                          for k in EVENT_COLUMNS})
        pq.write_table(table, folder / f"events-{shard:05d}.parquet", compression="lz4",
                       use_dictionary=DICTIONARY_COLUMNS)

    run_threaded(partial(write_shard, k) for k in range(max(1, -(-n // shard_rows))))  # 1 if N=0
    np.save(folder / "sequences.npy", samples.seq_items)
    np.savez(folder / "catalogue.npz", max_seq_len=np.asarray(samples.max_seq_len),
             **{k: getattr(samples, k) for k in CATALOGUE})


def shard_files(folder: Path) -> list[Path]:
    """The event shards of a samples folder, in row order."""
    files = sorted(folder.glob("events-*.parquet"))
    if not files:
        raise DataError(f"{folder}: no events-*.parquet shards (rerun `mimrec data`)")
    return files


def read_samples(folder: Path, shards: list[Path] | None = None) -> Samples:
    """Read a samples folder: every shard, or only ``shards`` (the per-event arrays of those
    rows; sequences and catalogue arrays are whole)."""
    files = shards if shards is not None else shard_files(folder)
    dataset = pads.dataset([str(f) for f in files], format="parquet")
    columns = {k: dataset.to_table(columns=[k]).column(0).to_numpy() for k in EVENT_COLUMNS}
    with np.load(folder / "catalogue.npz", allow_pickle=False) as z:
        catalogue = {k: z[k] for k in (*CATALOGUE, "max_seq_len")}
    seq_items = np.load(folder / "sequences.npy", allow_pickle=False)
    return Samples(**columns, seq_items=seq_items, **catalogue)
