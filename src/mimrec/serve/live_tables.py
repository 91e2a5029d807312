"""Catalogue-sized tensors that grow by appending rows, for live item adds at O(items added).

A served model reads, per catalogue item, its content row, its categorical feature rows and the
tables computed from them once (:meth:`~mimrec.ctr.model.CiUBM.catalogue_tables`: item vectors
and each block's projections). All of them are row-wise, so an item added while serving needs
only its own rows computed. :class:`LiveTables` keeps every such tensor in a buffer with headroom
and hands out views of the first ``n`` rows; an append writes the new rows past every view
already handed out and returns longer views. Rows are append-only (a row, once in a view, is
never written again), so a request scoring with an earlier view reads exactly the tensors it
started with while an add runs: no copy of the catalogue per add, no torn reads. When the
headroom is used up the buffers are reallocated larger (``GROWTH`` of the rows, amortised O(1)
per added row); views handed out earlier keep the old buffers alive until their requests end.

Above :data:`~mimrec.serve.scorer.REQUEST_TABLES_ABOVE` items the service keeps no derived
tables (``tables`` None): only the content rows, the catalogue index and the feature indices are
buffered, and each request computes the item vectors and projections of the rows it names
(:meth:`~mimrec.ctr.model.CiUBM.catalogue_tables` with ``rows``).

Letters: N catalogue items (+ 1 padding row), A added rows, E content dim, D item vector dim.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mimrec.ctr.blocks import CatalogueTables
from mimrec.ctr.model import CiUBM

GROWTH = 8  # headroom = rows // GROWTH (at least MIN_HEADROOM) at each (re)allocation
MIN_HEADROOM = 1024


def _leaves(value: Any) -> list[torch.Tensor]:
    """The tensors of a block's prepared part (None, a tensor, or a tuple / list of tensors)."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    raise TypeError(f"a block's prepared part must be None, a tensor or a tuple of tensors, "
                    f"got {type(value).__name__}")


def _rebuild(value: Any, leaves: list[torch.Tensor]) -> Any:
    """``value``'s structure with ``leaves`` in place of its tensors."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return leaves[0]
    return type(value)(leaves)


class LiveTables:
    """A model's catalogue tensors in append-only buffers: its content table (also the
    tables' content), catalogue index and item feature indices, and the item vectors and block
    projections of its :class:`CatalogueTables`.

    The model's own attributes (``content``, ``all_items``, the feature bags' ``index``) are
    pointed at views of the buffers; rows below a view's length are never written again.

    Args:
        model: the model to serve (eval mode); its catalogue attributes are taken over.
        tables: its catalogue tables as computed once at start (``tables.content`` is
            ``model.content``); None: no derived tables are kept (requests compute the rows
            they read), :meth:`tables` returns None.

    Shapes: every buffer (capacity, ...) with rows = model item indices (row 0 padding).
    """

    def __init__(self, model: CiUBM, tables: CatalogueTables | None) -> None:
        self.model = model
        self.derived = tables is not None
        self.rows = int(model.all_items.shape[0])
        self.grown = 0  # reallocations so far (each copies the catalogue once)
        self.written = 0  # rows appended so far
        # structure only
        self._shapes = dict(tables.prepared) if tables is not None else {}
        self._bags = len(model.items.features)
        tensors = [model.content, model.all_items, *(b.index for b in model.items.features)]
        if tables is not None:
            tensors.append(tables.vectors)
            for value in tables.prepared.values():
                tensors.extend(_leaves(value))
        self._buffers = self._allocate(tensors, self.rows + headroom(self.rows))
        self._point_model()

    @property
    def capacity(self) -> int:
        return int(self._buffers[1].shape[0])

    def _allocate(self, tensors: list[torch.Tensor], capacity: int) -> list[torch.Tensor]:
        buffers = []
        for t in tensors:
            if not t.numel():  # an ID-only model's empty content table stays empty
                buffers.append(t)
                continue
            if t.shape[0] != self.rows:
                raise ValueError(f"a catalogue tensor has {t.shape[0]} rows, expected {self.rows}")
            spare = _spare_base(t, capacity)
            if spare is not None:  # allocated with the headroom already: taken over, not copied
                buffers.append(spare)
                continue
            buf = torch.empty((capacity, *t.shape[1:]), dtype=t.dtype, device=t.device)
            buf[: self.rows] = t
            buffers.append(buf)
        return buffers

    def _views(self) -> list[torch.Tensor]:
        return [b[: self.rows] if b.numel() else b for b in self._buffers]

    def _point_model(self) -> None:
        """Point the model's catalogue attributes at the current views."""
        views = self._views()
        self.model.content = views[0]
        self.model.all_items = views[1]
        for bag, view in zip(self.model.items.features, views[2: 2 + self._bags], strict=True):
            bag.index = view

    def tables(self) -> CatalogueTables | None:
        """The catalogue tables of the current rows (views: nothing is copied); None when no
        derived tables are kept."""
        if not self.derived:
            return None
        views = self._views()
        out = CatalogueTables(views[2 + self._bags], views[0])
        at = 3 + self._bags
        for name, value in self._shapes.items():
            n = len(_leaves(value))
            out.prepared[name] = _rebuild(value, views[at: at + n])
            at += n
        return out

    def append(self, content: torch.Tensor, features: list[np.ndarray]
               ) -> CatalogueTables | None:
        """Add rows for the new model indices ``rows .. rows + A - 1``: their raw content
        vectors (L2-normalised here, as :meth:`CiUBM.set_content` does) and, per item feature
        bag, their (A, M) vocabulary indices. Computes only the new rows of the derived tables
        and returns the longer tables (None when none are kept). Shapes: ``content`` (A, E)."""
        a = int(content.shape[0])
        if self.rows + a > self.capacity:
            self._buffers = self._allocate(self._views(), self.rows + a + headroom(self.rows + a))
            self.grown += 1
        start, end = self.rows, self.rows + a
        bufs = self._buffers
        with torch.no_grad():
            if bufs[0].numel():
                bufs[0][start:end] = torch.nn.functional.normalize(content.float(), dim=-1)
            bufs[1][start:end] = torch.arange(start, end)
            for buf, extra in zip(bufs[2: 2 + self._bags], features, strict=True):
                buf[start:end] = torch.as_tensor(extra, dtype=torch.long).reshape(a, -1)
            self.rows = end  # the model's views grow first: the new rows' vectors read them
            self._point_model()
            try:
                if self.derived:
                    self._derive(start, end)
            except BaseException:
                self.rows = start
                self._point_model()
                raise
        self.written += a
        return self.tables()

    def _derive(self, start: int, end: int) -> None:
        """Item vectors and block projections of rows ``start .. end - 1`` only."""
        model, bufs = self.model, self._buffers
        part = CatalogueTables(model.items(torch.arange(start, end), model.content),
                               model.content[start:end])
        bufs[2 + self._bags][start:end] = part.vectors
        at = 3 + self._bags
        for name in self._shapes:
            for leaf in _leaves(model.blocks[name].prepare(part)):
                bufs[at][start:end] = leaf
                at += 1


def headroom(rows: int) -> int:
    """Rows allocated past ``rows``: a fraction of them, so reallocations are rare. A caller that
    allocates a catalogue table of ``rows`` rows with this many more and hands over the view of
    its first ``rows`` rows saves :class:`LiveTables` a catalogue-sized copy (at a million 128-d
    items, 512 MB more at start-up)."""
    return max(MIN_HEADROOM, rows // GROWTH)


def _spare_base(t: torch.Tensor, capacity: int) -> torch.Tensor | None:
    """The tensor ``t`` is the first rows of, when that tensor has ``capacity`` rows or more and
    the same row shape and dtype (so it can serve as ``t``'s buffer as it is); else None."""
    base = t._base
    if (base is None or base.data_ptr() != t.data_ptr() or base.dtype != t.dtype
            or base.shape[1:] != t.shape[1:] or base.shape[0] < capacity
            or not base.is_contiguous() or not t.is_contiguous()):
        return None
    return base
