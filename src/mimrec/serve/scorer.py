"""Scoring and live item addition on top of a :class:`~mimrec.serve.bundle.ServingBundle`.

Item ids are matched as strings ("50" and 50 are the same MovieLens item). Model item index
``i + 1`` is position ``i`` of the id list: the training catalogue first, then the items added
after training in the order the Representation Center holds them. An added item is unknown to the
ID tables (its ID embedding is the "unknown" row) and is scored through its content vector.

Items added through :meth:`Scorer.add_item` are encoded by the bundle's encoder, upserted into the
store (a new version, atomically), and their fields appended to ``added_items.jsonl`` beside the
store (:mod:`mimrec.serve.item_writer`, :mod:`mimrec.serve.added_items`), so a restarted service
knows them again. Every request
first asks the store for its latest version (one manifest look-up,
:class:`~mimrec.store.follow.StoreFollower`); when another worker wrote one, only the rows (and
added items' lines) written since are read and applied.
An added item's image is kept too (``added_images/``),
for the page to show. An added item's categorical features (the CTR model's item features, e.g.
``genres``) are looked up in the training vocabularies: a value training never saw has no
embedding and reads as "no value" (index 0, as a training item without that feature), and
:meth:`Scorer.describe` names it under ``unknown_values``.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mimrec.ctr.blocks import CatalogueTables
from mimrec.ctr.model import CiUBM
from mimrec.errors import MimrecError
from mimrec.serve.added_items import AddedItems
from mimrec.serve.bundle import ServingBundle, content_rows
from mimrec.serve.catalogue import Catalogue
from mimrec.serve.heap import return_freed_memory
from mimrec.serve.item_writer import ItemWriter, WrittenItem, added_image_path, as_id, jsonable
from mimrec.serve.live_tables import LiveTables
from mimrec.serve.request_error import RequestError
from mimrec.serve.writer_process import SharedWriter, WriterClient, WriterProcess
from mimrec.store.center import RepresentationCenter
from mimrec.store.follow import Changes, StoreFollower
from mimrec.validation import shown

MAX_HISTORY = 1000  # longer requests are refused; the model reads the last ``max_seq_len``
MAX_CANDIDATES = 1000
# Above this many catalogue items a worker keeps no whole-catalogue derived tables (item vectors,
# each block's projections): a request computes the rows it names (its candidates and history)
# from the content, ID and feature tables. Scores are the same either way; below it the tables
# are computed once (faster per request), above it they would cost more memory than they save
# time (at a million items about 1 GiB per worker).
REQUEST_TABLES_ABOVE = 100_000


class Scorer:
    """Scores candidates for a behaviour history and adds items while serving.

    Thread-safe without a lock on the scoring path: a request reads one snapshot (model, its
    catalogue tables, catalogue) whose rows never change. A new item's rows are appended past
    every snapshot's rows (:class:`~mimrec.serve.live_tables.LiveTables`: only the new rows are
    computed, nothing catalogue-sized is copied) and the longer snapshot is published with one
    reference swap. A rollback, or new content for a training item, builds a new model copy
    with whole new tables off to the side instead (O(catalogue); rare). Additions are
    serialised among themselves (a file lock, across threads and processes) and change only the
    store and the log (:meth:`write_item`); each process applies them when it follows the
    store, the writing one included, so a request waits at most for a snapshot refresh
    (``_refresh_lock``), never for an add's encoding or the store's write. Forward
    passes of concurrent requests run in parallel (torch releases the GIL in its ops).
    """

    def __init__(self, bundle: ServingBundle, writer_process: bool = False,
                 shared_writer: SharedWriter | None = None) -> None:
        """``writer_process``: adds run in a child process of the lowest CPU priority
        (:class:`~mimrec.serve.writer_process.WriterProcess`, what ``mimrec serve`` does when
        writes are enabled; the bundle then need not hold the encoder, see
        :func:`~mimrec.serve.bundle.load_bundle`) instead of in the calling thread; with
        ``shared_writer`` (a worker of ``mimrec serve --workers N``), in the service's one
        writer process, started by the supervisor."""
        self.bundle = bundle
        self._refresh_lock = threading.Lock()  # snapshot refreshes (follow_store)
        trained = bundle.items["item_id"].astype(str).to_numpy()
        self.titles = dict(zip(trained, bundle.items.get("title", pd.Series(trained)).astype(str),
                               strict=True))
        self.added_fields: Mapping[str, dict] = {}  # an AddedItems log with a store
        version = None
        ids = trained
        self._follower: StoreFollower | None = None
        self._live: LiveTables | None = None  # the catalogue tensors (with a store)
        self._item_vocab = {bag.name: {v: i + 1 for i, v in enumerate(bag.vocab)}
                            for bag in bundle.tables.items}
        self._item_widths = {bag.name: bag.index.shape[1] for bag in bundle.tables.items}
        if bundle.store is not None:
            self._follower = StoreFollower(bundle.store)
            if bundle.added_ids is None:  # a bundle built without its store read: read it
                center = RepresentationCenter(bundle.store, vectors=False)
                table, added = content_rows(center, trained)
                version = center.version
                del center
                bundle.model.set_content(table, in_place=True)
                del table
            else:  # load_bundle read the store once: its model holds these rows already
                added, version = bundle.added_ids, bundle.store_read_version
            ids = np.concatenate([trained, added])
            self.added_fields = AddedItems(bundle.store)
            bundle.model.items.extend_features(self._feature_rows(added))
        self.request_tables = len(ids) > REQUEST_TABLES_ABOVE
        self._publish(bundle.model, Catalogue.build(ids, len(trained), version))
        self.user_ids = np.asarray(bundle.user_ids, dtype=str)
        self.user_index = {u: i + 1 for i, u in enumerate(self.user_ids)}
        self._vocab = {bag.name: {v: i + 1 for i, v in enumerate(bag.vocab)}
                       for bag in bundle.tables.users}
        self._widths = {bag.name: bag.index.shape[1] for bag in bundle.tables.users}
        self._writer: ItemWriter | WriterProcess | WriterClient | None = None  # adds items
        if bundle.store is not None and bundle.encoder_named:
            if shared_writer is not None:
                self._writer = WriterClient(shared_writer)
            elif writer_process:  # (the bundle may come without its encoder: the child loads it)
                self._writer = WriterProcess(bundle.run, bundle.model_key)
            elif bundle.encoder is not None:
                self._writer = ItemWriter(bundle.store, bundle.encoder)
                self._writer.warm_up(self._writer.text_fields)
        return_freed_memory()  # start-up read the store and built the tables

    # ---- scoring -------------------------------------------------------------------------

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The item text fields the encoder reads (what ``POST /v1/items`` accepts)."""
        return self._writer.text_fields if self._writer is not None else ()

    @property
    def item_features(self) -> tuple[str, ...]:
        """The item categorical features the CTR model reads (also accepted by ``POST
        /v1/items``)."""
        return tuple(self._item_vocab)

    @property
    def has_images(self) -> bool:
        """Whether items can carry a picture (the catalogue has an image column, or the
        encoder an image tower)."""
        return "image" in self.bundle.items.columns or bool(
            self._writer is not None and self._writer.has_image_tower)

    def unknown_values(self, fields: dict[str, Any]) -> dict[str, list[str]]:
        """Per categorical feature, the given values training never saw (read as no value)."""
        out = {}
        for name, vocab in self._item_vocab.items():
            missing = [str(v) for v in _values(fields.get(name)) if str(v) not in vocab]
            if missing:
                out[name] = missing
        return out

    def _feature_rows(self, added: np.ndarray) -> list[np.ndarray]:
        """(A, M) vocabulary indices of each item feature for the added items (in order)."""
        rows = []
        # only items with recorded fields have values (a store may hold many items without)
        with_fields = [(r, str(key)) for r, key in enumerate(added)
                       if str(key) in self.added_fields] if self.added_fields else []
        for name, vocab in self._item_vocab.items():
            index = np.zeros((len(added), self._item_widths[name]), dtype=np.int64)
            for r, key in with_fields:
                values = _values(self.added_fields[key].get(name))
                known = [vocab[str(v)] for v in values if str(v) in vocab]
                index[r, : len(known[: index.shape[1]])] = known[: index.shape[1]]
            rows.append(index)
        return rows

    @property
    def can_add_items(self) -> bool:
        return self._writer is not None

    @property
    def model(self) -> CiUBM:
        """The model requests are scored with now."""
        return self._snapshot[0]

    @property
    def catalogue(self) -> Catalogue:
        """The items requests can name now."""
        return self._snapshot[2]

    def _publish(self, model: CiUBM, catalogue: Catalogue) -> None:
        """Compute the model's catalogue tables once (every request reads them), put them in
        growable buffers (with a store: items can be added), then make (model, tables,
        catalogue) current at once. With :attr:`request_tables` (a catalogue above
        :data:`REQUEST_TABLES_ABOVE` items) no derived tables are kept: ``tables`` is None and
        each forward pass computes the rows its batch names."""
        model.eval()
        tables: CatalogueTables | None = None
        model.batch_tables = self.request_tables
        if not self.request_tables:
            with torch.inference_mode():
                tables = model.catalogue_tables()
        if self.bundle.store is not None:
            self._live = LiveTables(model, tables)
            tables = self._live.tables()
        self._snapshot = (model, tables, catalogue)

    def item_indices(self, ids: list, name: str, catalogue: Catalogue | None = None) -> np.ndarray:
        """Model indices of ``ids``; unknown ids raise a :class:`RequestError` naming them."""
        try:
            keys = [as_id(v) for v in ids]
        except TypeError as exc:
            raise RequestError(name, f"item ids are integers or strings, got {exc.args[0]!r}") from None
        rows = (catalogue or self.catalogue).rows_of(keys)
        if not rows.all():
            unknown = [k for k, r in zip(keys, rows, strict=True) if r == 0]
            listed = ", ".join(shown(u) for u in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise RequestError(name, f"unknown item ids: {listed}{more}")
        return rows

    def user_row(self, user_id: Any) -> int:
        """Model index of a user; None -> 0 (an anonymous user, read as unknown)."""
        if user_id is None:
            return 0
        row = self.user_index.get(str(user_id), 0)
        if row == 0:
            raise RequestError("user_id", f"unknown user id {shown(user_id)} (omit it for a new "
                                          "user)")
        return row

    def side_features(self, side: dict[str, Any], n: int) -> list[torch.Tensor | None] | None:
        """Explicit user side features as (n, M) vocabulary indices, one entry per user bag."""
        unknown = sorted(set(side) - set(self._vocab))
        if unknown:
            known = ", ".join(self._vocab) or "none"
            raise RequestError(unknown[0], f"unknown field (user side features here: {known})")
        if not side:
            return None
        out: list[torch.Tensor | None] = []
        for name, vocab in self._vocab.items():
            if name not in side or side[name] is None:
                out.append(None)
                continue
            values = side[name] if isinstance(side[name], list) else [side[name]]
            index = np.zeros(self._widths[name], dtype=np.int64)
            for j, v in enumerate(values[: len(index)]):
                if str(v) not in vocab:
                    examples = ", ".join(list(vocab)[:5])
                    raise RequestError(name, f"unknown value {shown(v)} (known values include "
                                             f"{examples})")
                index[j] = vocab[str(v)]
            out.append(torch.from_numpy(index).expand(n, -1))
        return out

    def score(self, history: list, candidates: list, user_id: Any = None,
              side: dict[str, Any] | None = None) -> np.ndarray:
        """Click probabilities of ``candidates`` (in order) for a user with ``history``
        (item ids, most recent last; only the last ``max_seq_len`` are read)."""
        return self.score_at_version(history, candidates, user_id, side)[0]

    def score_at_version(self, history: list, candidates: list, user_id: Any = None,
                         side: dict[str, Any] | None = None) -> tuple[np.ndarray, int | None]:
        """:meth:`score` and the store version of the snapshot it scored from (a concurrent
        follow of the store cannot make the two disagree)."""
        if not candidates:
            raise RequestError("candidates", "must hold at least one item id")
        if len(candidates) > MAX_CANDIDATES:
            raise RequestError("candidates", f"at most {MAX_CANDIDATES} items per request, "
                                             f"got {len(candidates)}")
        if len(history) > MAX_HISTORY:
            raise RequestError("history", f"at most {MAX_HISTORY} items, got {len(history)}")
        self.follow_store()
        model, tables, catalogue = self._snapshot
        items = torch.from_numpy(self.item_indices(candidates, "candidates", catalogue))
        recent = self.item_indices(history, "history", catalogue)[-self.bundle.max_seq_len:]
        n = len(items)
        hist = torch.from_numpy(recent if len(recent) else np.zeros(1, np.int64))
        hist = hist.unsqueeze(0).expand(n, -1)
        user = torch.full((n,), self.user_row(user_id), dtype=torch.long)
        features = self.side_features(side or {}, n)
        with torch.inference_mode():
            logits = model(user, items, hist, features, tables=tables)
        return torch.sigmoid(logits).numpy().astype(float), catalogue.store_version

    # ---- browsing (the HTML page) ---------------------------------------------------------

    def user_history(self, user_id: Any, limit: int) -> list[str]:
        """The user's positive events in the logs (all splits), oldest first, the last ``limit``
        (the bundle keeps each user's last 1,000)."""
        row = self.user_row(user_id)
        if row == 0:
            raise RequestError("user_id", "a user id is required")
        items = self.bundle.browse.history(row - 1)[-limit:]
        cat = self.catalogue
        return [cat.id_at(int(i) + 1) for i in items]

    def users(self, limit: int) -> list[dict]:
        """The first ``limit`` users with their number of positive events."""
        counts = self.bundle.browse.positives
        return [{"user_id": str(u), "positives": int(c)}
                for u, c in zip(self.user_ids[:limit], counts[:limit], strict=True)]

    def popular_items(self, limit: int) -> list[dict]:
        """Items added while serving (newest first), then the catalogue by training popularity
        (the bundle keeps the 5,000 most trained on)."""
        self.follow_store()
        cat = self.catalogue
        added = cat.added(limit)
        popular = self.bundle.browse.popular[: max(0, limit - len(added))]
        ids = added + [cat.id_at(int(i) + 1) for i in popular]
        return [{"item_id": i, "title": self.title(i), "added_while_serving": i in self.added_fields}
                for i in ids]

    def title(self, item_id: str) -> str:
        """An item's title (or its id when it has none)."""
        added = self.added_fields.get(item_id, {})
        return str(added.get("title") or self.titles.get(item_id, item_id))

    # ---- items ---------------------------------------------------------------------------

    def describe(self, item_id: Any) -> dict:
        """What the service knows of an item: its fields, whether the ID model saw it in
        training, and the store version that holds its content vector."""
        self.follow_store()
        key = str(item_id)
        cat = self.catalogue
        pos = cat.row(key) - 1
        if pos < 0:
            raise RequestError("item_id", f"unknown item id {shown(item_id)}", status=404)
        trained = pos < cat.num_trained
        if trained:
            row = self.bundle.items.iloc[pos]
            fields = {k: jsonable(row[k]) for k in self.bundle.items.columns if k != "item_id"}
        else:
            fields = self.added_fields.get(key, {})
        if key in self.added_fields:
            fields = {**fields, **self.added_fields[key]}
        fields.pop("image", None)  # bytes or a path: served by image(), not described
        described = {"item_id": key, "title": self.title(key),
                     "in_training_catalogue": bool(trained),
                     "added_while_serving": key in self.added_fields,
                     "store_version": cat.store_version, "fields": fields,
                     "has_image": self.image(key) is not None}
        if not trained:
            described["unknown_values"] = self.unknown_values(fields)
        return described

    def image(self, item_id: Any) -> bytes | None:
        """An item's picture as encoded bytes (PNG / JPEG as given), None when it has none:
        an added item's uploaded image, else the catalogue's ``image`` cell (bytes, or a file
        path; a relative path is read from the data folder)."""
        key = str(item_id)
        if key in self.added_fields and self.bundle.store is not None:
            path = added_image_path(self.bundle.store, key)
            if path.is_file():
                return path.read_bytes()
        pos = self.catalogue.row(key) - 1
        if pos < 0 or pos >= self.catalogue.num_trained or "image" not in self.bundle.items:
            return None
        value = self.bundle.items["image"].iloc[pos]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value) or None
        if isinstance(value, str) and value:
            path = Path(value)
            if not path.is_absolute() and self.bundle.data_folder is not None:
                path = self.bundle.data_folder / path
            return path.read_bytes() if path.is_file() else None
        return None

    def similar(self, item_id: Any, k: int) -> list[dict]:
        """The ``k`` items whose content vectors are nearest this item's (cosine), from the
        store's vector search at its latest version; the item itself is left out."""
        if self._follower is None or not self.model.content.numel():
            raise RequestError("item_id", "this bundle's model reads no content vectors: it "
                                          "has no content similarity", status=409)
        self.follow_store()
        key = str(item_id)
        model, _, cat = self._snapshot
        pos = cat.row(key)
        if pos == 0:
            raise RequestError("item_id", f"unknown item id {shown(item_id)}", status=404)
        # the served row is the stored vector L2-normalised: the same cosine neighbours
        hits = self._follower.similar(model.content[pos].numpy(), k + 1)
        return [{"item_id": i, "title": self.title(i), "similarity": round(sim, 6)}
                for i, sim in hits if i != key][:k]

    def check_can_add(self) -> None:
        """Refuse (409) item adds on a model that reads no content vectors, naming the flag
        that serves the content model."""
        if not self.can_add_items:
            raise RequestError("item_id", f"the served model {self.bundle.model_key} reads no "
                                          "content vectors: it cannot score new items (serve "
                                          f"the content model: mimrec serve {self.bundle.run} "
                                          "--model ciubm)", status=409)

    def add_item(self, item_id: Any, fields: dict[str, Any], image: bytes | None,
                 attributes: list[str] | None) -> dict:
        """Encode an item from its content, upsert it into the store (a new version) and make it
        scorable. An id that exists gets its content replaced. Returns :meth:`describe`."""
        return self.describe_written(self.write_item(item_id, fields, image, attributes))

    def write_item(self, item_id: Any, fields: dict[str, Any], image: bytes | None,
                   attributes: list[str] | None) -> WrittenItem:
        """The persistent half of :meth:`add_item` (:meth:`ItemWriter.write
        <mimrec.serve.item_writer.ItemWriter.write>`): nothing in memory changes, this process
        takes the item in when it next follows the store (:meth:`describe_written`), like every
        other worker. So a worker thread can run this while requests are scored, and they never
        wait for it."""
        self.check_can_add()
        assert self._writer is not None
        return self._writer.write(item_id, fields, image, attributes)

    def describe_written(self, written: WrittenItem) -> dict:
        """:meth:`describe` of an item :meth:`write_item` wrote, once this process follows the
        store up to it, with the write's notes."""
        described = self.describe(written.key)  # (follows the store first)
        if written.notes:
            described["notes"] = list(written.notes)
        return described

    def follow_store(self) -> None:
        """Pick up versions other processes wrote (another worker of this service added an
        item): one look-up of the store's latest version per call; when it moved, the rows
        written since are read and applied."""
        if self._follower is None or self._follower.latest() == self.catalogue.store_version:
            return
        with self._refresh_lock:
            if self._follower.latest() != self.catalogue.store_version:
                self._added_log.catch_up()
                self._refresh()

    def _refresh(self) -> None:
        """Apply the store's rows written since this catalogue's version: new items (and new
        content for items added while serving) are appended, O(rows written); a rollback or new
        content for a training item rebuilds the tables (:meth:`_rebuild`)."""
        assert self._follower is not None and self._live is not None
        cat = self.catalogue
        changes = self._follower.changes(cat.store_version)
        if changes.version == cat.store_version:
            return
        if not changes.complete and not len(changes.ids):  # compaction: same rows, new version
            model, tables, _ = self._snapshot
            self._snapshot = (model, tables, dataclasses.replace(cat, store_version=changes.version))
            return
        keys = [str(k) for k in changes.ids]
        known = cat.rows_of(keys)
        if changes.complete or ((known > 0) & (known <= cat.num_trained)).any():
            self._rebuild(changes)
            return
        model, _, _ = self._snapshot
        tables = self._live.append(torch.from_numpy(changes.vectors),
                                   self._feature_rows(np.asarray(keys)))
        self._snapshot = (model, tables, cat.appended(keys, changes.version))

    def _rebuild(self, changes: Changes) -> None:
        """Whole new tables from the current ones and ``changes`` on a model copy (the live
        model is left to the requests reading it). O(catalogue)."""
        cat, current = self.catalogue, self.model
        trained = np.asarray(cat.names[: cat.num_trained])
        if changes.complete:
            table, added = _snapshot_rows(changes, trained)
            ids = np.concatenate([trained, added])
        else:
            table, ids = _apply_changes(current.content, cat, changes)
        model = copy.deepcopy(current)  # the copy shares nothing with the live model
        model.set_content(table)
        model.items.extend_features(self._feature_rows(ids[len(trained):]))
        self._publish(model, Catalogue.build(ids, len(trained), changes.version))
        return_freed_memory()

    @property
    def _added_log(self) -> AddedItems:
        assert isinstance(self.added_fields, AddedItems), "items are added to a store"
        return self.added_fields


def _apply_changes(content: torch.Tensor, cat: Catalogue, changes: Changes
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """A new content table and ids after upserts: known ids get their new vector, new ids are
    appended in the store's order. ``content`` (the served, normalised rows; normalising again
    changes nothing) is copied, never written."""
    ids = cat.ids  # each id once, at its current row
    order = {k: i + 1 for i, k in enumerate(ids)}
    table = content[torch.from_numpy(np.concatenate([[0], cat.rows_of(list(ids))]))]  # (1 + N, E)
    index = np.fromiter((order.get(str(k), 0) for k in changes.ids), np.int64,
                        count=len(changes.ids))
    known = index > 0
    vectors = torch.from_numpy(changes.vectors)
    table[torch.from_numpy(index[known])] = vectors[torch.from_numpy(known)]
    new = ~known
    if not new.any():
        return table, ids
    return torch.cat([table, vectors[torch.from_numpy(new)]]), np.concatenate([ids, changes.ids[new]])


def _snapshot_rows(changes: Changes, trained: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The content table of a whole snapshot (after a rollback), as :func:`content_rows`."""
    order = {k: i for i, k in enumerate(changes.ids)}
    missing = [k for k in trained if k not in order]
    if missing:
        raise MimrecError(f"the store no longer holds training item {shown(missing[0])} "
                          f"({len(missing)} missing) at version {changes.version}")
    added = changes.ids[~pd.Index(changes.ids).isin(trained)]  # hashed, O(N + I)
    rows = np.fromiter((order[k] for k in np.concatenate([trained, added])), np.int64)
    table = np.concatenate([np.zeros((1, changes.vectors.shape[1]), np.float32),
                            changes.vectors[rows]])
    return torch.from_numpy(table), added


def _values(value: Any) -> list:
    """A categorical field's values: a list as it is, a scalar as one value, None as none."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
