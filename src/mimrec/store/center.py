"""The Representation Center: a versioned item_id -> vector store on LanceDB.

Layout of a store folder::

    items.lance/        the LanceDB table: item_id (string), vector (fixed_size_list<float32>[D]),
                        written (int64: the table version whose commit wrote the row); its schema
                        metadata ``mimrec.store`` = the encoder, its hash, dim and dtype
    .lock               one writer at a time per folder (advisory lock)

Why LanceDB: an embedded, columnar, versioned table format. Every write is one commit of a new
manifest (a crash leaves the previous version readable, never a torn one); ``merge_insert`` upserts
by id and writes only the rows it adds (plus a deletion file when it replaces one), so an add costs
what it adds, not the catalogue; B-tree indices on ``item_id`` and ``written`` keep an upsert and
a "what changed since version V" query cheap; old versions are kept under a retention policy
(:mod:`mimrec.store.retention`) and can be rolled back to; the same table can live on object
storage. Serving follows the latest version per request (:mod:`mimrec.store.follow`).

A :class:`RepresentationCenter` is a snapshot of one version read into memory (ids + vectors),
which is what a model's content table needs; lookups resolve ids by binary search.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from mimrec.errors import MimrecError
from mimrec.validation import id_problem, invalid_ids, shown

TABLE = "items"  # the LanceDB table name: <store>/items.lance
INFO_KEY = b"mimrec.store"  # schema metadata key holding the StoreInfo as JSON
LEGACY_CURRENT = "CURRENT.json"  # the commit point of the Arrow-file stores before LanceDB


class UnknownItemError(MimrecError):
    """An item id the store does not hold."""


@dataclass(frozen=True)
class StoreInfo:
    """What produced a store version: checked against what a model expects."""

    encoder: str  # name of the encoder artifact (e.g. "csft")
    encoder_hash: str  # its content hash
    dim: int
    dtype: str = "float32"


def table_path(folder: str | Path) -> Path:
    """The LanceDB table folder inside a store folder."""
    return Path(folder) / f"{TABLE}.lance"


def run_of(folder: Path) -> Path:
    """The run folder a store lives in (``RUN/index/<source>``), else the store folder itself."""
    return folder.parent.parent if folder.parent.name == "index" else folder


def check_format(folder: str | Path) -> Path:
    """The store's table folder; a one-line error for a folder that holds no store, or a store in
    the Arrow-file format of earlier mimrec versions (with the command that converts it)."""
    folder = Path(folder)
    path = table_path(folder)
    if path.is_dir():
        return path
    if (folder / LEGACY_CURRENT).is_file():
        raise MimrecError(f"{folder} is a store in the Arrow-file format of earlier mimrec "
                          f"versions; convert it once with `mimrec store migrate {run_of(folder)}`")
    raise MimrecError(f"{folder} is not a Representation Center (no {path.name}); build one with "
                      "`mimrec index`")


def open_table(folder: str | Path):  # -> lancedb.table.LanceTable
    """The store's LanceDB table at its latest version."""
    import lancedb

    check_format(folder)
    return lancedb.connect(str(folder)).open_table(TABLE)


def open_dataset(folder: str | Path, version: int | None = None):  # -> lance.LanceDataset
    """The store's Lance dataset (the table's columnar files) at ``version`` (None = latest)."""
    import lance

    path = check_format(folder)
    try:
        return lance.dataset(str(path), version=version)
    except (ValueError, OSError) as exc:
        if version is None:
            raise MimrecError(f"{path}: cannot open the store table ({exc})") from None
        kept = [v["version"] for v in lance.dataset(str(path)).versions()]
        raise MimrecError(f"{folder}: version {version} does not exist (kept versions: "
                          f"{_ranges(kept)})") from None


def _ranges(versions: list[int]) -> str:
    if not versions:
        return "none"
    return f"{versions[0]}..{versions[-1]}" if len(versions) > 1 else str(versions[0])


def info_of(schema: pa.Schema, where: Path) -> StoreInfo:
    """The :class:`StoreInfo` a table's schema metadata records."""
    raw = (schema.metadata or {}).get(INFO_KEY)
    if raw is None:
        raise MimrecError(f"{where}: the table has no {INFO_KEY.decode()} metadata (not written "
                          "by mimrec)")
    return StoreInfo(**json.loads(raw))


def arrow_rows(ids: np.ndarray, vectors: np.ndarray, written: int, info: StoreInfo) -> pa.Table:
    """Rows in the table's schema (with the store's metadata)."""
    dim = info.dim
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    table = pa.table({"item_id": pa.array([str(i) for i in ids], pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
                      "written": pa.array(np.full(len(ids), written, np.int64))})
    return table.replace_schema_metadata({INFO_KEY: json.dumps(asdict(info)).encode()})


def table_rows(table: pa.Table, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A store table's ``item_id`` column as str and its ``vector`` column as one writable
    (N, ``dim``) array (:func:`_vectors`). Shapes: (N,), (N, D)."""
    return ids_of(table.column("item_id")), _vectors(table.column("vector"), dim)


def ids_of(column: pa.ChunkedArray) -> np.ndarray:
    """A store table's ``item_id`` column as a str array. Shapes: (N,)."""
    return np.asarray(column.to_numpy(zero_copy_only=False)).astype(str)


def _vectors(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """A fixed-size-list vector column as one writable (N, D) array, copied chunk by chunk into
    it (no combined intermediate: at a million 128-d rows that is 512 MB less at peak)."""
    chunks = [c.flatten().to_numpy(zero_copy_only=False) for c in column.chunks]
    dtype = chunks[0].dtype if chunks else np.float32
    out = np.empty((len(column), dim), dtype=dtype)
    at = 0
    for flat in chunks:
        rows = len(flat) // dim if dim else 0
        out[at: at + rows] = flat.reshape(rows, dim)
        at += rows
    return out


class RepresentationCenter:
    """A store folder read at its latest version (or a given one).

    Args:
        folder: the store folder.
        version: a version number to open; None = the latest one.

    Shapes: ``vectors`` (N, D) float32, row order = ``ids``.
    """

    def __init__(self, folder: str | Path, version: int | None = None, *,
                 vectors: bool = True) -> None:
        self.folder = Path(folder)
        dataset = open_dataset(self.folder, version)
        self.version = dataset.version
        self.info = info_of(dataset.schema, self.folder)
        self._dataset = dataset  # this version, for read_vectors_into
        self._vectors: np.ndarray | None = None
        if vectors:
            table = dataset.to_table(columns=["item_id", "vector"])
            self.ids, self._vectors = table_rows(table, self.info.dim)  # (N,), (N, D) writable
        else:  # ids only: the vectors are streamed into the caller's array (read_vectors_into)
            self.ids = ids_of(dataset.to_table(columns=["item_id"]).column("item_id"))
        self.manifest = {"version": self.version, "items": len(self.ids), "dim": self.info.dim,
                         "dtype": self.info.dtype, "info": asdict(self.info)}
        self._index_ids()

    def _index_ids(self) -> None:
        self._order = np.argsort(self.ids, kind="stable")  # ids are resolved by binary search
        self._sorted_ids = self.ids[self._order]
        repeated = self._sorted_ids[1:] == self._sorted_ids[:-1]
        if repeated.any():  # not written by upsert; lookups would be ambiguous
            raise MimrecError(
                f"{table_path(self.folder)}: item id {shown(str(self._sorted_ids[1:][repeated][0]))}"
                f" appears more than once in version {self.version}; roll back to an earlier one "
                f"(`mimrec store rollback {run_of(self.folder)} --version V`) or rebuild the store "
                "with `mimrec index`")

    @property
    def vectors(self) -> np.ndarray:
        """This version's vectors, row order = ``ids``. Shapes: (N, D)."""
        if self._vectors is None:
            raise MimrecError(f"store {self.folder} was opened without its vectors "
                              "(RepresentationCenter(..., vectors=False)); use read_vectors_into")
        return self._vectors

    def read_vectors_into(self, out: np.ndarray, positions: np.ndarray,
                          batch_rows: int = 65_536) -> None:
        """Write row ``r`` of this version's vectors to ``out[positions[r]]``, reading the
        vector column ``batch_rows`` rows at a time: a caller that wants the vectors in its own
        order (a model's content table) holds one catalogue-sized array, not two (at a million
        128-d items the whole column read at once is 512 MB more at start-up, and as many again
        for Arrow's copy). Shapes: ``out`` (M, D), ``positions`` (N,) into ``out``'s rows."""
        if len(positions) != len(self.ids):
            raise ValueError(f"{len(positions)} positions for {len(self.ids)} rows")
        dim, at = self.info.dim, 0
        for batch in self._dataset.to_batches(columns=["vector"], batch_size=batch_rows,
                                              scan_in_order=True):
            rows = batch.num_rows
            flat = batch.column(0).flatten().to_numpy(zero_copy_only=False)
            out[positions[at: at + rows]] = flat.reshape(rows, dim)
            at += rows
        if at != len(self.ids):
            raise MimrecError(f"store {self.folder} version {self.version}: read {at} vectors "
                              f"for {len(self.ids)} ids")

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
        check_compatible(self.folder, self.info, expected)


def check_compatible(folder: Path, info: StoreInfo, expected: StoreInfo) -> None:
    """A clear error when the store at ``folder`` (whose metadata is ``info``) was built by
    another encoder than ``expected`` says, or has another dim."""
    if info.dim != expected.dim:
        raise MimrecError(f"store {folder} holds {info.dim}-d vectors; the model "
                          f"expects {expected.dim}-d")
    if (info.encoder, info.encoder_hash) != (expected.encoder, expected.encoder_hash):
        raise MimrecError(
            f"store {folder} was built by encoder {info.encoder} "
            f"({info.encoder_hash[:12]}), the model expects {expected.encoder} "
            f"({expected.encoder_hash[:12]})")


def store_count(folder: str | Path, expected: StoreInfo | None = None) -> int:
    """The number of items a store holds at its latest version, read from its manifest (no
    vectors); with ``expected``, checked as :meth:`RepresentationCenter.check_compatible`."""
    folder = Path(folder)
    dataset = open_dataset(folder)
    if expected is not None:
        check_compatible(folder, info_of(dataset.schema, folder), expected)
    return int(dataset.count_rows())


def current_version(folder: str | Path) -> int:
    """The latest version of a store (reads the table's manifest only, no vectors)."""
    return open_dataset(folder).version


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
        yield


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


def _check_shape(vectors: np.ndarray, n: int, dim: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape != (n, dim):
        raise MimrecError(f"vectors have shape {vectors.shape}, expected ({n}, {dim})")
    return vectors


def write_version(folder: str | Path, ids: np.ndarray, vectors: np.ndarray, info: StoreInfo,
                  parent: int | None = None) -> int:
    """Write ``ids`` and ``vectors`` as the whole content of a new version (a new store, or one
    that replaces every row of an existing one); returns the latest version number.

    ``parent`` is accepted for callers of the Arrow-file store and ignored (the table's history
    records the order of versions).
    """
    del parent
    folder = Path(folder)
    check_ids(ids, folder)  # before numpy's fixed-width strings could cut a NUL off
    vectors = _check_shape(vectors, len(np.asarray(ids)), info.dim)
    with writer_lock(folder):
        return _write_all(folder, np.asarray(ids).astype(str), vectors, info)


def _write_all(folder: Path, ids: np.ndarray, vectors: np.ndarray, info: StoreInfo) -> int:
    import lancedb
    from lancedb.index import BTree

    if (folder / LEGACY_CURRENT).is_file() and not table_path(folder).is_dir():
        check_format(folder)  # never write a new table over an unconverted store
    db = lancedb.connect(str(folder))
    if table_path(folder).is_dir():
        table = db.open_table(TABLE)
        table.add(_in_batches(arrow_rows(ids, vectors, table.version + 1, info)),
                  mode="overwrite")
    else:
        table = db.create_table(TABLE, _in_batches(arrow_rows(ids, vectors, 1, info)))
    if len(ids):
        table.create_index("item_id", config=BTree(), replace=True)
        table.create_index("written", config=BTree(), replace=True)
    return table.version


WRITE_BATCH_ROWS = 65_536


def _in_batches(rows: pa.Table) -> pa.RecordBatchReader:
    """``rows`` as a stream of batches of :data:`WRITE_BATCH_ROWS` rows (views, no copy): LanceDB
    writes a stream as it reads it, where a whole table is first converted at once (1M x 384
    float32, 1.4 GB: +3.1 GB of peak RSS and 10 s given whole, +0.5 GB and 4 s as a stream)."""
    return pa.RecordBatchReader.from_batches(rows.schema,
                                             rows.to_batches(max_chunksize=WRITE_BATCH_ROWS))


def upsert(folder: str | Path, ids: np.ndarray | list, vectors: np.ndarray,
           retention=None) -> int:
    """Add or replace items in one commit (``merge_insert`` on ``item_id``); returns the version
    that holds them once it is committed. The retention policy (``retention``: a
    :class:`~mimrec.store.retention.Retention`, None = its defaults) tidies every n-th commit,
    by default in a background thread after this returns."""
    from mimrec.store.retention import Retention, maintain

    folder = Path(folder)
    check_ids(ids, folder)
    retention = retention or Retention()
    with writer_lock(folder):
        table = open_table(folder)
        info = info_of(table.schema, folder)
        keys = np.asarray(ids).astype(str)
        rows = arrow_rows(keys, _check_shape(vectors, len(keys), info.dim), table.version + 1,
                          info)
        result = (table.merge_insert("item_id").when_matched_update_all()
                  .when_not_matched_insert_all().execute(rows))
        if not retention.background:
            maintain(folder, result.version, retention)
    if retention.background:
        maintain(folder, result.version, retention)
    return result.version
