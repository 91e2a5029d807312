"""The rows of one split that the report scores, read from the data artifact's sample shards
one column batch at a time: users, labels, buckets and the true click probability, not the
whole samples (histories, items, timestamps and the other splits stay on disk)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mimrec.data.sample_shards import shard_files

COLUMNS = ("user", "label", "bucket", "click_probability")
BATCH_ROWS = 1_000_000


@dataclass(frozen=True)
class BucketInfo:
    """The popularity buckets of a data artifact: names in code order, each one's lowest train
    count, and the notes on merged buckets."""

    names: tuple[str, ...]
    lows: tuple[int, ...]
    notes: tuple[str, ...]


def read_split_rows(data_dir: Path, split: int) -> dict[str, np.ndarray]:
    """``user``, ``label``, ``bucket`` and ``click_probability`` of the samples of ``split``
    (a code of :data:`~mimrec.data.samples.SPLITS`), in sample order, as
    ``Samples.subset(split)`` gives them."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in COLUMNS}
    for path in shard_files(data_dir / "samples"):
        for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=["split", *COLUMNS]):
            keep = batch.column(0).to_numpy() == split
            for i, key in enumerate(COLUMNS, start=1):
                parts[key].append(batch.column(i).to_numpy()[keep])
    return {k: np.concatenate(v) for k, v in parts.items()}


def read_buckets(data_dir: Path) -> BucketInfo:
    """The popularity buckets of the data artifact at ``data_dir``."""
    with np.load(data_dir / "samples" / "catalogue.npz", allow_pickle=False) as z:
        return BucketInfo(tuple(str(n) for n in z["bucket_names"]),
                          tuple(int(x) for x in z["bucket_lows"]),
                          tuple(str(n) for n in z["bucket_notes"]))
