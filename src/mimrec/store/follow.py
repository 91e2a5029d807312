"""Following a store from a serving process: the latest version per request, what changed since.

Each row records the version that wrote it (``written``), so the rows that changed after version V
are one query (``written > V``) over the fragments written after V, whose cost follows the rows
changed, not the catalogue. A commit that removes rows (a rollback) rewrites every row, so a
follower sees it as a change of everything and reloads the whole snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimrec.store.ann import NPROBES, REFINE_FACTOR
from mimrec.store.center import info_of, open_dataset, open_table, table_rows


@dataclass(frozen=True)
class Changes:
    """Rows written after a version, read at version ``version``.

    ``complete`` is True when every row of the table changed (then ``ids`` / ``vectors`` are the
    whole new snapshot and rows absent from them are gone).
    """

    version: int
    ids: np.ndarray  # (M,) str
    vectors: np.ndarray  # (M, D) float32
    complete: bool


class StoreFollower:
    """An open store that says cheaply whether a newer version exists (one manifest look-up)
    and reads only the rows written since a given version.

    Args:
        folder: the store folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._dataset = open_dataset(self.folder)
        self.dim = info_of(self._dataset.schema, self.folder).dim
        self._table = None  # the LanceDB handle for vector search, opened on first use

    def latest(self) -> int:
        """The latest committed version (acknowledged writes of every process included)."""
        return self._dataset.latest_version

    def changes(self, since: int) -> Changes:
        """The rows written after version ``since``, read at the latest version.

        When this follower last read version ``since`` (the usual case: it reads every version
        its process applies), only the fragments that version did not have are scanned: a
        commit writes its rows into new fragments (an upsert of a known id too; the old row is
        only marked deleted), and compaction's merged fragments hold rows of earlier versions,
        which the ``written`` filter drops. Otherwise the whole table is filtered. The latest
        version is opened from the dataset already open (its session and caches are reused)."""
        known = self._dataset
        dataset = known.checkout_version(known.latest_version)
        self._dataset = dataset
        columns, where = ["item_id", "vector"], f"written > {int(since)}"
        if known.version == since:
            old = {f.fragment_id for f in known.get_fragments()}
            fresh = [f for f in dataset.get_fragments() if f.fragment_id not in old]
            rows = (dataset.scanner(columns=columns, filter=where, fragments=fresh).to_table()
                    if fresh else dataset.schema.empty_table().select(columns))
        else:
            rows = dataset.to_table(columns=columns, filter=where)
        ids, vectors = table_rows(rows, self.dim)
        vectors = vectors.astype(np.float32, copy=False)
        return Changes(dataset.version, ids, vectors, len(ids) == dataset.count_rows())

    def similar(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` items nearest ``vector`` (cosine) at the latest version, nearest first, as
        (item id, cosine similarity); LanceDB's vector search (its ANN index when the table has
        one, ``mimrec store ann``; an exact scan otherwise)."""
        if self._table is None:
            self._table = open_table(self.folder)
        self._table.checkout_latest()
        hits = (self._table.search(np.asarray(vector, np.float32)).distance_type("cosine")
                .select(["item_id", "_distance"]).nprobes(NPROBES).refine_factor(REFINE_FACTOR)
                .limit(k).to_arrow())
        ids = hits.column("item_id").to_pylist()
        distances = hits.column("_distance").to_numpy()
        return [(str(i), float(1.0 - d)) for i, d in zip(ids, distances, strict=True)]
