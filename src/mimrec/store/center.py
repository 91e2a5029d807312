"""The Representation Center: a versioned item_id -> vector store on Arrow IPC files.

Layout of a store folder::

    CURRENT.json                 {"version": 3}  (replaced atomically: the commit point)
    v000001.arrow ...            one Arrow IPC file per version: item_id (string),
                                 vector (fixed_size_list<float32>[D])
    v000001.json ...             that version's manifest: encoder artifact + hash, dim, dtype,
                                 item count, parent version, time

Why Arrow IPC: a well-kept columnar format that reads with zero copies into numpy, keeps ids
and vectors in one file (one rename makes a version visible), and is readable from any language.
A version file is written to a temporary name, flushed, and renamed; only then is ``CURRENT.json``
switched. A writer killed at any point leaves the previous version readable.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from mimrec.artifacts import write_json_atomic
from mimrec.errors import MimrecError
from mimrec.processes import remove_stale_temps
from mimrec.validation import id_problem, invalid_ids, shown

CURRENT = "CURRENT.json"


class UnknownItemError(MimrecError):
    """An item id the store does not hold."""


@dataclass(frozen=True)
class StoreInfo:
    """What produced a store version: checked against what a model expects."""

    encoder: str  # name of the encoder artifact (e.g. "csft")
    encoder_hash: str  # its content hash
    dim: int
    dtype: str = "float32"


def _version_name(version: int) -> str:
    return f"v{version:06d}"


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _table_bytes(ids: np.ndarray, vectors: np.ndarray) -> bytes:
    dim = vectors.shape[1]
    flat = pa.array(vectors.astype(np.float32, copy=False).ravel())
    table = pa.table({"item_id": pa.array(ids.astype(str)),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class RepresentationCenter:
    """A store folder opened at its current version (or a given one).

    Args:
        folder: the store folder.
        version: a version number to open; None = the current one.

    Shapes: ``vectors`` (N, D) float32, row order = ``ids``.
    """

    def __init__(self, folder: str | Path, version: int | None = None) -> None:
        self.folder = Path(folder)
        self.version = version if version is not None else current_version(self.folder)
        name = _version_name(self.version)
        path = self.folder / f"{name}.arrow"
        if not path.is_file():
            raise MimrecError(f"{self.folder}: version {self.version} does not exist ({path.name})")
        self.manifest = json.loads((self.folder / f"{name}.json").read_text())
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        self.ids = table.column("item_id").to_numpy(zero_copy_only=False).astype(str)
        dim = self.manifest["dim"]
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        self.vectors = flat.reshape(-1, dim).copy()  # (N, D), writable, detached from the mmap
        self._order = np.argsort(self.ids, kind="stable")  # ids are resolved by binary search
        self._sorted_ids = self.ids[self._order]
        repeated = self._sorted_ids[1:] == self._sorted_ids[:-1]
        if repeated.any():  # written before the store checked its ids; lookups would be ambiguous
            raise MimrecError(
                f"{path}: item id {shown(str(self._sorted_ids[1:][repeated][0]))} appears more "
                f"than once; open an earlier version (set {CURRENT} to its number) or rebuild "
                "the store with `mimrec index`")
        self.info = StoreInfo(**self.manifest["info"])

    @property
    def dim(self) -> int:
        return self.info.dim

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return bool(self.rows([item_id], allow_unknown=True)[0] >= 0)

    def rows(self, ids: np.ndarray | list, allow_unknown: bool = False) -> np.ndarray:
        """Row numbers of ``ids`` (any shape); unknown ids raise, or give -1 if allowed.

        Ids are compared as strings, by binary search over the sorted ids (no hashing of Python
        objects: a batch costs about what numpy's own ``searchsorted`` does).
        """
        ids = np.asarray(ids)
        flat = (ids if ids.dtype.kind == "U" else ids.astype(str)).ravel()
        if not len(self.ids):
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self._sorted_ids, flat)
        np.minimum(pos, len(self.ids) - 1, out=pos)
        rows = self._order[pos]
        unknown = self._sorted_ids[pos] != flat
        if unknown.any():
            if not allow_unknown:
                missing = flat[unknown]
                raise UnknownItemError(f"unknown item id {str(missing[0])!r} ({len(missing)} "
                                       f"unknown) in store {self.folder} version {self.version}")
            rows[unknown] = -1
        return rows.reshape(ids.shape)

    def lookup(self, ids: np.ndarray | list) -> np.ndarray:
        """Vectors of ``ids`` (any shape (...)) -> (..., D); unknown ids raise."""
        return self.vectors[self.rows(ids)]

    def padded_table(self, ids: np.ndarray | list) -> torch.Tensor:
        """A model's content table: row 0 zeros (padding), then the vectors of ``ids`` in order.
        Unknown ids raise. Shapes: N ids -> (1 + N, D) float32."""
        vectors = self.lookup(np.asarray(ids))
        return torch.from_numpy(np.concatenate([np.zeros((1, self.dim), np.float32), vectors]))

    def gather(self, rows: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Vectors of row numbers, e.g. a padded (B, L) batch -> (B, L, D) float32 tensor.

        Rows must lie in ``[0, len(self))``. ``np.take`` along the rows: one thread, 1.3-1.5x
        numpy fancy indexing (which the benchmark compares against), and unlike torch's
        multi-threaded ``index_select`` it does not stall when another process holds a core.
        """
        rows = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        return torch.from_numpy(np.take(self.vectors, rows.astype(np.int64, copy=False), axis=0))

    def aligned(self, ids: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
        """Vectors in the order of ``ids`` plus a mask of which ids the store knows (others 0)."""
        rows = self.rows(ids, allow_unknown=True)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        known = rows >= 0
        out[known] = self.vectors[rows[known]]
        return out, known

    def check_compatible(self, expected: StoreInfo) -> None:
        """A clear error when this store was built by another encoder or has another dim."""
        if self.info.dim != expected.dim:
            raise MimrecError(f"store {self.folder} holds {self.info.dim}-d vectors; the model "
                              f"expects {expected.dim}-d")
        if (self.info.encoder, self.info.encoder_hash) != (expected.encoder,
                                                             expected.encoder_hash):
            raise MimrecError(
                f"store {self.folder} was built by encoder {self.info.encoder} "
                f"({self.info.encoder_hash[:12]}), the model expects {expected.encoder} "
                f"({expected.encoder_hash[:12]})")


def current_version(folder: str | Path) -> int:
    """The version ``CURRENT.json`` of a store folder names (reads nothing else)."""
    current = Path(folder) / CURRENT
    if not current.is_file():
        raise MimrecError(f"{folder} is not a Representation Center (no {CURRENT}); "
                          "build one with `mimrec index`")
    return json.loads(current.read_text())["version"]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), across processes."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """One writer at a time per store folder (an advisory lock on ``folder/.lock``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        remove_stale_temps(folder, ".*.tmp-*")  # version files of killed writers
        yield


def write_version(folder: str | Path, ids: np.ndarray, vectors: np.ndarray, info: StoreInfo,
                  parent: int | None = None) -> int:
    """Write a new version and make it current; returns its number.

    The version file and its manifest are complete on disk before ``CURRENT.json`` changes.
    """
    folder = Path(folder)
    with writer_lock(folder):
        return _write_version(folder, ids, vectors, info, parent)


def _write_version(folder: Path, ids: np.ndarray, vectors: np.ndarray, info: StoreInfo,
                   parent: int | None) -> int:
    check_ids(ids, folder)  # before numpy's fixed-width strings could cut a NUL off
    ids = np.asarray(ids).astype(str)
    if vectors.ndim != 2 or vectors.shape != (len(ids), info.dim):
        raise MimrecError(f"vectors have shape {vectors.shape}, expected ({len(ids)}, {info.dim})")
    version = _next_version(folder)
    name = _version_name(version)
    manifest = {"version": version, "parent": parent, "items": len(ids), "dim": info.dim,
                "dtype": info.dtype, "info": info.__dict__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = folder / f".{name}.arrow.tmp-{os.getpid()}"
    _fsync_write(tmp, _table_bytes(ids, vectors))
    write_json_atomic(folder / f"{name}.json", manifest)
    os.replace(tmp, folder / f"{name}.arrow")
    write_json_atomic(folder / CURRENT, {"version": version})
    return version


def check_ids(ids: np.ndarray | list, folder: Path) -> None:
    """Refuse a version whose ids break :mod:`mimrec.validation` or repeat, before any write."""
    keys = np.array([str(i) for i in np.asarray(ids, dtype=object).ravel()], dtype=object)
    bad = invalid_ids(keys)
    if bad.any():
        first = str(keys[bad][0])
        raise MimrecError(f"store {folder}: item id {shown(first)} refused: {id_problem(first)}")
    index = pd.Index(keys)
    if index.has_duplicates:
        first = index[index.duplicated()][0]
        raise MimrecError(f"store {folder}: item id {shown(first)} appears more than once in "
                          "the new version; nothing was written")


def _next_version(folder: Path) -> int:
    existing = [int(p.stem[1:]) for p in folder.glob("v*.json") if p.stem[1:].isdigit()]
    return max(existing, default=0) + 1


def upsert(folder: str | Path, ids: np.ndarray | list, vectors: np.ndarray) -> int:
    """Add or replace items: a new version = current version + these rows. Returns its number."""
    folder = Path(folder)
    with writer_lock(folder):
        check_ids(ids, folder)
        center = RepresentationCenter(folder)
        new_ids = np.asarray(ids).astype(str)
        vectors = np.asarray(vectors, dtype=np.float32)
        keep = ~np.isin(center.ids, new_ids)
        all_ids = np.concatenate([center.ids[keep], new_ids])
        all_vectors = np.concatenate([center.vectors[keep], vectors.reshape(len(new_ids), -1)])
        return _write_version(folder, all_ids, all_vectors, center.info, center.version)
