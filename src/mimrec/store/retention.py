"""Keeping a store small: compaction and retention of versions, garbage collection, rollback.

Every upsert commits a version holding one small new fragment. Every ``maintain_every`` commits
:func:`maintain` merges the small fragments into one (the large ones are never rewritten, so this
costs what was added since) and deletes the files only versions older than the last
``keep_versions`` use. By default this runs in a background thread of the writing process
(:class:`Maintainer`), after the upsert has returned: the acknowledged write is its
``merge_insert`` commit alone; a write that arrives while the tidy holds the store's lock waits
for it. ``mimrec store gc`` does the same at once and also folds new rows into the
id indices; ``mimrec store rollback`` makes an earlier version the latest again.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from mimrec.errors import MimrecError
from mimrec.ranges import check_range
from mimrec.store.center import (
    arrow_rows,
    info_of,
    open_dataset,
    open_table,
    table_path,
    table_rows,
    writer_lock,
)


@dataclass(frozen=True)
class Retention:
    """How many versions a store keeps and how often it tidies up after upserts."""

    keep_versions: int = 10  # the last K versions stay readable (rollback targets)
    maintain_every: int = 20  # tidy after every n-th commit (compaction + retention)
    fragment_rows: int = 65_536  # small fragments are merged up to this many rows
    background: bool = True  # tidy in a background thread (False: inside the upsert's commit)

    def __post_init__(self) -> None:
        check_range("store.keep_versions", self.keep_versions, 1)
        check_range("store.maintain_every", self.maintain_every, 1)
        check_range("store.fragment_rows", self.fragment_rows, 1)


def maintain(folder: Path, version: int, retention: Retention) -> None:
    """After the commit of ``version``: every ``maintain_every`` versions, compact the small
    fragments and drop versions beyond the last ``keep_versions``. Inline (the caller holds the
    lock), or handed to the folder's :class:`Maintainer` (the caller has released it)."""
    if version % retention.maintain_every:
        return
    if retention.background:
        Maintainer.of(folder).request(retention)
    else:
        _tidy(folder, retention, reindex=False, delete_unverified=False)


class Maintainer:
    """Tidies one store folder in a background thread of this process, under the store's
    writer lock (one per folder and process: :meth:`of`). Requests that arrive while a tidy
    runs are folded into one more tidy. A failure is printed, never raised into a write."""

    _all: dict[Path, Maintainer] = {}
    _guard = threading.Lock()

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs = 0  # tidies finished
        self._pending: Retention | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, folder: Path) -> Maintainer:
        """The maintainer of ``folder`` in this process."""
        key = Path(folder).resolve()
        with cls._guard:
            return cls._all.setdefault(key, cls(key))

    def request(self, retention: Retention) -> None:
        """Tidy soon (returns at once)."""
        with self._lock:
            self._pending = retention
            if self._thread is None:  # (a running thread takes the request on its next turn)
                self._thread = threading.Thread(target=self._run, name="mimrec-store-tidy",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                retention, self._pending = self._pending, None
                if retention is None:
                    self._thread = None
                    return
            try:
                with writer_lock(self.folder):
                    _tidy(self.folder, retention, reindex=False, delete_unverified=False)
                self.runs += 1
            except Exception as exc:  # noqa: BLE001 - a background tidy never fails a write
                print(f"mimrec: store {self.folder}: background tidy failed ({exc}); "
                      f"`mimrec store gc {self.folder}` does it at once", file=sys.stderr)

    def wait(self, timeout: float | None = None) -> None:
        """Until no tidy is running or pending (benchmarks, tests, a clean shutdown)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


def _tidy(folder: Path, retention: Retention, reindex: bool, delete_unverified: bool) -> None:
    dataset = open_dataset(folder)
    # deletions stay in their deletion files (a rewrite of a large fragment would cost O(catalogue))
    dataset.optimize.compact_files(target_rows_per_fragment=retention.fragment_rows,
                                   materialize_deletions=False, defer_index_remap=not reindex)
    if reindex:
        open_dataset(folder).optimize.optimize_indices()
    open_dataset(folder).cleanup_old_versions(retain_versions=retention.keep_versions,
                                              delete_unverified=delete_unverified,
                                              error_if_tagged_old_versions=False)


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def gc(folder: str | Path, keep: int) -> dict:
    """Compact, re-index and keep the last ``keep`` versions; files of writers that died
    mid-commit are removed too. Returns versions and bytes before and after."""
    folder = Path(folder)
    try:
        retention = Retention(keep_versions=keep)
    except ValueError as exc:
        raise MimrecError(f"--keep: {exc}") from None
    with writer_lock(folder):
        before = (len(open_dataset(folder).versions()), folder_bytes(table_path(folder)))
        _tidy(folder, retention, reindex=True, delete_unverified=True)
        dataset = open_dataset(folder)
        return {"versions_before": before[0], "bytes_before": before[1],
                "versions": [v["version"] for v in dataset.versions()],
                "bytes": folder_bytes(table_path(folder)), "latest": dataset.version}


def versions(folder: str | Path) -> list[dict]:
    """The versions a store keeps: number, time and row count."""
    dataset = open_dataset(folder)
    return [{"version": v["version"], "timestamp": str(v["timestamp"]),
             "rows": int(v.get("metadata", {}).get("total_rows", -1))} for v in dataset.versions()]


def rollback(folder: str | Path, version: int) -> int:
    """Make the content of ``version`` the latest again, as a new version (history is kept).

    Every row is written again, stamped with the new version, so serving processes see the
    rollback as a change of every row and reload (O(catalogue): rollbacks are rare).
    """
    from lancedb.index import BTree

    folder = Path(folder)
    with writer_lock(folder):
        old = open_dataset(folder, version)
        table = open_table(folder)
        if version == table.version:
            raise MimrecError(f"{folder}: version {version} is already the latest")
        info = info_of(old.schema, folder)
        content = old.to_table(columns=["item_id", "vector"])
        ids, vectors = table_rows(content, info.dim)
        table.add(arrow_rows(ids, vectors, table.version + 1, info), mode="overwrite")
        if len(ids):
            table.create_index("item_id", config=BTree(), replace=True)
            table.create_index("written", config=BTree(), replace=True)
        return table.version
