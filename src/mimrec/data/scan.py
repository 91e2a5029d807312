"""Scan an interactions parquet dataset (a folder of shards) into encoded events, batch by batch.

pyarrow's dataset reader streams record batches of the four or five columns the sample builder
reads; each batch is validated and its ids are mapped to user and item rows before the next is
read, so memory holds the compact event arrays (:class:`~mimrec.data.events.Events`), never the
log as a table. Integer ids, timestamps and labels take a vectorised path; other types (string
ids, date strings, ratings) go through the same validation as in-memory tables, one batch at a
time. Errors name the shard file and its row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
from rich.progress import Progress

from mimrec.data.events import Events, index_dtype
from mimrec.data.tables import normalise_ids, validate_interactions
from mimrec.errors import DataError

BATCH_ROWS = 1 << 20
_OPTIONAL = ("label", "rating", "click_probability")


DENSE_SLACK = 4  # a direct lookup table is kept when the integer ids span at most 4x their count


class IdIndex:
    """Rows of a table's string ids, looked up by string or, for canonical integer ids
    (``"42"``), straight from integer columns without making strings: through a table indexed by
    ``id - smallest id`` when the ids are dense enough (at most ``DENSE_SLACK`` times as many
    slots as ids; one memory read an event), else by binary search."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=str)
        self.index = pd.Index(self.ids)
        numbers = pd.to_numeric(pd.Series(self.ids), errors="coerce").to_numpy()
        whole = np.isfinite(numbers) & (np.abs(numbers) < 2.0**62)
        ints = np.where(whole, numbers, 0).astype(np.int64)
        canonical = whole & (ints.astype(str) == self.ids)
        rows = np.flatnonzero(canonical)
        order = np.argsort(ints[rows], kind="stable")
        self.int_values, self.int_rows = ints[rows][order], rows[order]
        self.dense: np.ndarray | None = None  # (span,) row of id ``low + k``, -1 where none
        self.low = int(self.int_values[0]) if len(self.int_values) else 0
        span = int(self.int_values[-1]) - self.low + 1 if len(self.int_values) else 0
        if 0 < span <= DENSE_SLACK * len(self.int_values):
            self.dense = np.full(span, -1, dtype=np.int64)
            self.dense[self.int_values - self.low] = self.int_rows

    def rows(self, values: np.ndarray) -> np.ndarray:
        """Row of each value (-1 where unknown), int64."""
        if values.dtype.kind not in "iu":
            return self.index.get_indexer(values).astype(np.int64)
        if not len(self.int_values):
            return np.full(len(values), -1, dtype=np.int64)
        values = values.astype(np.int64, copy=False)
        if self.dense is not None:
            offset = values - self.low  # (B,) new array
            outside = offset.view(np.uint64) >= len(self.dense)  # below low wraps to huge
            offset[outside] = 0
            rows = self.dense[offset]
            rows[outside] = -1
            return rows
        pos = np.searchsorted(self.int_values, values)
        pos = np.minimum(pos, len(self.int_values) - 1)
        return np.where(self.int_values[pos] == values, self.int_rows[pos], -1)


def open_dataset(folder: Path) -> pads.Dataset:
    """The parquet dataset in ``folder``; a clear error when it cannot be read or lacks columns."""
    try:
        dataset = pads.dataset(folder, format="parquet")
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{folder}: cannot read the parquet dataset: "
                        f"{str(exc).splitlines()[0]}") from None
    if not dataset.files:
        raise DataError(f"{folder}: no parquet files in the interactions folder")
    names = dataset.schema.names
    for col in ("user_id", "item_id", "timestamp"):
        if col not in names:
            raise DataError(f"{folder}: missing column {col!r} (columns present: "
                            f"{', '.join(names)})")
    if "label" not in names and "rating" not in names:
        raise DataError(f"{folder}: needs a 'label' (0/1) or a 'rating' column; found neither")
    return dataset


def _batches(dataset: pads.Dataset, progress: Progress | None
             ) -> Iterator[tuple[str, int, pa.RecordBatch]]:
    """``(file, first row in that file, batch)`` over every shard in file order."""
    columns = [c for c in ("user_id", "item_id", "timestamp", *_OPTIONAL)
               if c in dataset.schema.names]
    bar = progress.add_task("reading interactions", total=dataset.count_rows()) if progress \
        else None
    for fragment in sorted(dataset.get_fragments(), key=lambda f: f.path):
        row = 0
        try:
            for batch in fragment.to_batches(columns=columns, batch_size=BATCH_ROWS):
                yield fragment.path, row, batch
                row += batch.num_rows
                if progress:
                    progress.update(bar, advance=batch.num_rows)
        except pa.ArrowException as exc:
            raise DataError(f"{fragment.path}: cannot read the table: "
                            f"{str(exc).splitlines()[0]}") from None


def _fast(batch: pa.RecordBatch) -> bool:
    """Integer ids, timestamps and labels, no nulls, no rating / probability columns."""
    names = batch.schema.names
    if "label" not in names or "click_probability" in names or "rating" in names:
        return False
    cols = [batch.column(c) for c in ("user_id", "item_id", "timestamp", "label")]
    return all(pa.types.is_integer(c.type) and c.null_count == 0 for c in cols)


def _where(source: str, first: int, bad: np.ndarray, batch: pa.RecordBatch) -> str:
    idx = int(np.flatnonzero(bad)[0])
    return f"{source}: row {first + idx + 1}: {batch.slice(idx, 1).to_pylist()[0]}"


def _decode(batch: pa.RecordBatch, source: str, first: int, positive_rating: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """user ids, item ids, timestamps, labels, click probabilities of one batch."""
    if _fast(batch):
        ts = batch.column("timestamp").to_numpy().astype(np.int64)
        bad = ~(np.abs(ts) < 2**62)
        if bad.any():
            raise DataError(f"column 'timestamp' out of range at {_where(source, first, bad, batch)}")
        label = batch.column("label").to_numpy()
        bad = (label != 0) & (label != 1)
        if bad.any():
            raise DataError(f"column 'label' must be 0 or 1, at {_where(source, first, bad, batch)}")
        return (batch.column("user_id").to_numpy(), batch.column("item_id").to_numpy(), ts,
                label.astype(np.float32), np.full(batch.num_rows, np.nan, dtype=np.float32))
    df = validate_interactions(batch.to_pandas(), f"{source} (rows from {first + 1})",
                               positive_rating)
    prob = (df["click_probability"].to_numpy(np.float32) if "click_probability" in df
            else np.full(len(df), np.nan, dtype=np.float32))
    return (df["user_id"].to_numpy(dtype=str), df["item_id"].to_numpy(dtype=str),
            df["timestamp"].to_numpy(np.int64), df["label"].to_numpy(np.float32), prob)


def distinct_user_ids(dataset: pads.Dataset) -> np.ndarray:
    """The sorted distinct user ids (as strings) of a dataset without a users table."""
    ints, strs = [], []
    for source, _, batch in _batches(dataset, None):
        col = batch.column("user_id")
        if pa.types.is_integer(col.type) and col.null_count == 0:
            ints.append(np.unique(col.to_numpy()))
        else:
            strs.append(np.unique(normalise_ids(batch.to_pandas(), "user_id", source)
                                  .to_numpy(dtype=str)))
    parts = [np.unique(np.concatenate(ints)).astype(str)] if ints else []
    ids = np.unique(np.concatenate(parts + strs)) if parts or strs else np.zeros(0, str)
    return np.array(ids.tolist(), dtype=str)  # the narrowest string width, as pandas gives


def scan_interactions(folder: Path, items: pd.DataFrame, users: pd.DataFrame | None,
                      positive_rating: float, progress: Progress | None = None) -> Events:
    """Encode every interaction of the parquet dataset ``folder`` (see the module docstring)."""
    dataset = open_dataset(folder)
    n = dataset.count_rows()
    if n == 0:
        raise DataError(f"{folder}: the table is empty")
    user_ids = (users["user_id"].to_numpy(dtype=str) if users is not None
                else distinct_user_ids(dataset))
    user_index, item_index = IdIndex(user_ids), IdIndex(items["item_id"].to_numpy(dtype=str))
    out = Events(np.empty(n, index_dtype(len(user_ids))), np.empty(n, index_dtype(len(items))),
                 np.empty(n, np.int64),
                 np.empty(n, np.float32), np.empty(n, np.float32), user_ids)
    at = 0
    for source, first, batch in _batches(dataset, progress):
        user, item, ts, label, prob = _decode(batch, source, first, positive_rating)
        end = at + len(user)
        out.user[at:end], out.item[at:end] = user_index.rows(user), item_index.rows(item)
        for name, index in (("item", out.item), ("user", out.user)):
            missing = index[at:end] < 0
            if missing.any():
                table = "items" if name == "item" else "users"
                raise DataError(f"interactions name a {name}_id that is not in the {table} "
                                f"table, at {_where(source, first, missing, batch)}")
        out.timestamp[at:end], out.label[at:end], out.click_probability[at:end] = ts, label, prob
        at = end
    return out
