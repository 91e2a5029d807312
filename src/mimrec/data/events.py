"""Interactions encoded as rows of the user and item tables: the per-event arrays the sample
builder reads. In-memory tables are encoded here; a parquet dataset folder is scanned batch by
batch into the same arrays by :mod:`mimrec.data.scan`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

INT32_MAX = int(np.iinfo(np.int32).max)


def index_dtype(size: int) -> type[np.signedinteger]:
    """The narrowest of int32 / int64 that holds every index of an array of ``size`` entries
    (and -1): int32 up to 2**31 - 1 entries, int64 beyond. The data stage keeps user and item
    rows and sort positions in it, so a log of fewer than 2**31 events costs 4 bytes a row index
    instead of 8."""
    return np.int32 if size <= INT32_MAX else np.int64


@dataclass
class Events:
    """Encoded interactions, in the order they were read.

    Shapes: N events, U users.
    """

    user: np.ndarray  # (N,) row in ``user_ids``, in ``index_dtype(U)``
    item: np.ndarray  # (N,) row in the items table, in ``index_dtype(len(items))``
    timestamp: np.ndarray  # (N,) int64 seconds
    label: np.ndarray  # (N,) float32 0/1
    click_probability: np.ndarray  # (N,) float32, NaN where unknown
    user_ids: np.ndarray  # (U,) str: the users table's ids, or the sorted distinct ids

    def __len__(self) -> int:
        return len(self.user)

    def reorder(self, order: np.ndarray) -> None:
        """Put the events in ``order``, one array at a time (memory holds one extra array)."""
        for name in ("user", "item", "timestamp", "label", "click_probability"):
            setattr(self, name, getattr(self, name)[order])

    def widen_rows(self) -> None:
        """User and item rows as int64 (what :class:`~mimrec.data.samples.Samples` holds), one
        array at a time: the narrow one is dropped as soon as its copy is made."""
        for name in ("user", "item"):
            setattr(self, name, getattr(self, name).astype(np.int64, copy=False))


def encode_events(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None
                  ) -> Events:
    """Encode a validated interactions table (see :mod:`mimrec.data.tables`)."""
    user_ids = users["user_id"] if users is not None else pd.Series(
        np.unique(inter["user_id"].to_numpy(dtype=str)))
    user = pd.Index(user_ids).get_indexer(inter["user_id"]).astype(index_dtype(len(user_ids)))
    item = pd.Index(items["item_id"]).get_indexer(inter["item_id"]).astype(index_dtype(len(items)))
    prob = (inter["click_probability"].to_numpy(np.float32) if "click_probability" in inter
            else np.full(len(inter), np.nan, dtype=np.float32))
    return Events(user, item, inter["timestamp"].to_numpy(np.int64),
                  inter["label"].to_numpy(np.float32), prob, np.asarray(user_ids, dtype=str))
