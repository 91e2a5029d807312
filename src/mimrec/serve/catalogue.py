"""The served catalogue's id <-> model index map, as immutable snapshots that grow by appends
(live item adds at O(items added); :class:`mimrec.serve.scorer.Scorer` publishes one per change)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Catalogue:
    """An immutable view of the items the service can score: the model indices ``1..size``.

    Snapshots made by appends share ``names``, ``rows`` and ``moved``, which only ever grow: an
    entry past ``size`` belongs to a later snapshot and this one does not see it. An id whose
    content is replaced after training (an added item added again) gets a new row; ``moved``
    keeps all its rows so an earlier snapshot still finds the row it knew.
    """

    names: list[str] = field(repr=False)  # names[r - 1] = the id of model index r (append-only)
    rows: dict[str, int] = field(repr=False)  # id -> its latest model index
    moved: dict[str, list[int]] = field(repr=False)  # id -> every row it had, ascending
    size: int  # this snapshot's model indices are 1..size
    count: int  # distinct items in this snapshot
    num_trained: int  # model indices 1..num_trained are the training catalogue
    store_version: int | None

    @classmethod
    def build(cls, ids: np.ndarray, num_trained: int, version: int | None) -> Catalogue:
        names = [str(k) for k in ids]
        rows = {k: i + 1 for i, k in enumerate(names)}
        return cls(names, rows, {}, len(names), len(names), num_trained, version)

    def row(self, key: str) -> int:
        """The model index of ``key`` in this snapshot (0 = not in it)."""
        r = self.rows.get(key, 0)
        if r <= self.size:
            return r
        return max((x for x in self.moved.get(key, ()) if x <= self.size), default=0)

    def rows_of(self, keys: list[str]) -> np.ndarray:
        """Model indices of ``keys`` (0 = not in this snapshot). Shapes: (K,) int64."""
        rows = np.fromiter((self.rows.get(k, 0) for k in keys), dtype=np.int64, count=len(keys))
        for j in np.flatnonzero(rows > self.size):  # written after this snapshot: rare
            rows[j] = self.row(keys[j])
        return rows

    def id_at(self, row: int) -> str:
        """The id of model index ``row`` (1..size)."""
        return self.names[row - 1]

    def added(self, limit: int | None = None) -> list[str]:
        """The items added after training, each once (at its latest row), newest first; the
        first ``limit`` of them (reads about that many rows, not the catalogue)."""
        out: list[str] = []
        for r in range(self.size, self.num_trained, -1):
            if limit is not None and len(out) >= limit:
                break
            key = self.names[r - 1]
            if self.row(key) == r:
                out.append(key)
        return out

    @property
    def ids(self) -> np.ndarray:
        """Every item id in model index order (each id at its current row; O(catalogue): for
        tools and tests, not for requests)."""
        return np.asarray([k for r, k in enumerate(self.names[: self.size], 1)
                           if self.row(k) == r])

    def appended(self, keys: list[str], version: int) -> Catalogue:
        """The next snapshot: ``keys`` take the model indices ``size + 1 ..`` (a key already
        known moves to its new row). Writes the shared tables; this snapshot is unchanged."""
        del self.names[self.size:]  # (nothing, unless an append failed half-way)
        new = 0
        for j, key in enumerate(keys):
            r = self.size + 1 + j
            self.names.append(key)
            old = self.rows.get(key, 0)
            if old:  # known id: keep its rows for earlier snapshots before it moves
                self.moved.setdefault(key, [old]).append(r)
            else:
                new += 1
            self.rows[key] = r
        return dataclasses.replace(self, size=self.size + len(keys), count=self.count + new,
                                   store_version=version)
