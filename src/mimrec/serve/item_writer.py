"""Adding an item while serving, its persistent half: check it, encode it from its content, then
write its image, its fields' log line and its vector (a store upsert), one add at a time across
threads and processes (a file lock beside the store).

Nothing in memory changes here: every worker (the writing one included) takes the item in when
it next follows the store (:meth:`mimrec.serve.scorer.Scorer.follow_store`). The fields' line is
on disk before the vector, so a follower that sees the vector finds the fields.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mimrec.encoders.image import decode_image
from mimrec.errors import MimrecError
from mimrec.serve.added_items import ADDED_ITEMS_FILE, append_record
from mimrec.serve.request_error import RequestError
from mimrec.store.center import file_lock, open_table, upsert
from mimrec.validation import id_problem, tokens_problem

ADDED_IMAGES_DIR = "added_images"


@dataclass(frozen=True)
class WrittenItem:
    """An item :meth:`ItemWriter.write` persisted: its id and notes for the client."""

    key: str
    notes: tuple[str, ...] = ()


def as_id(value: Any) -> str:
    """An item id as the service matches it ("50" and 50 are the same item); TypeError for
    anything but an integer or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(value)
    return str(value)


def added_image_path(store: Path, key: str) -> Path:
    """The file of an added item's image (named by a hash: ids may hold any character)."""
    return store / ADDED_IMAGES_DIR / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".img")


class ItemWriter:
    """Encodes items with the serving bundle's encoder and writes them into ``store``."""

    def __init__(self, store: Path, encoder: Any) -> None:
        self.store = store
        self.encoder = encoder

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The item text fields the encoder reads (none without a text tower)."""
        encoder = self.encoder
        return tuple(encoder.cfg.text_fields) if encoder.text_tower else ()

    @property
    def has_image_tower(self) -> bool:
        """Whether the encoder embeds photos."""
        return getattr(self.encoder, "image_tower", None) is not None

    @property
    def source(self) -> str:
        """The index source whose vectors are served (the store folder's name)."""
        return self.store.name

    def warm_up(self, text_fields: tuple[str, ...]) -> None:
        """Pay the write path's first-use costs at start-up: importing LanceDB, opening the
        table and the encoder's first forward pass took seconds under the GIL, and the first
        add of each worker stalled its requests for as long (1.4-2.2 s at a million items)."""
        open_table(self.store)
        self.encode("warm-up", {name: "warm up" for name in text_fields}, None, None)

    def write(self, item_id: Any, fields: dict[str, Any], image: bytes | None,
              attributes: list[str] | None) -> WrittenItem:
        """Check the item, encode it, then (holding the store's lock for added items) write
        its image, its fields' log line and its vector."""
        key = as_id(item_id)
        problem = id_problem(key)
        if problem:
            raise RequestError("item_id", problem)
        problem = tokens_problem(attributes or [])
        if problem:
            raise RequestError("attributes", problem)
        vector, embedded = self.encode(key, fields, image, attributes)  # (1, E)
        record = {k: jsonable(v) for k, v in fields.items()}
        if attributes:
            record["attributes"] = list(attributes)
        record["embedded_from"] = embedded
        record["added"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with file_lock(self.store / ".added_items.lock"):
            if image is not None:
                _write_atomic(added_image_path(self.store, key), image)
            append_record(self.store / ADDED_ITEMS_FILE, key, record)  # before the vector
            upsert(self.store, [key], vector)
        notes = []
        if image is not None and "image" not in embedded:
            notes.append(
                "the photo is stored and shown, not embedded: this run serves text-only "
                f"vectors (the index stage's source {self.source!r}; they scored best on "
                "valid), so the item's vector comes from its text")
        return WrittenItem(key, tuple(notes))

    def encode(self, key: str, fields: dict[str, Any], image: bytes | None,
               attributes: list[str] | None) -> tuple[np.ndarray, list[str]]:
        """The item's content vector (1, E) and what it was embedded from (the non-empty text
        fields, ``image``, ``attributes``). A photo is always checked; on an encoder without an
        image tower (a store of raw text vectors, or ``encoder.use_image`` off) it is kept for
        display and the vector comes from the text."""
        encoder = self.encoder
        row: dict[str, Any] = {"item_id": key}
        embedded: list[str] = []
        if image is not None:  # decoded first: a broken or oversized image is named as such
            try:
                decoded = decode_image(image)
            except MimrecError as exc:
                raise RequestError("image", f"not a readable PNG or JPEG ({exc})") from None
            if getattr(encoder, "image_tower", None) is not None:
                row["image"] = decoded
                embedded.append("image")
        for name in encoder.cfg.text_fields:
            value = fields.get(name)
            row[name] = value if value is not None else ""
            if value not in (None, "", []):
                embedded.append(name)
        row["attributes"] = list(attributes or [])
        if attributes and getattr(encoder, "attribute_tower", None) is not None:
            embedded.append("attributes")
        try:
            return encoder.encode_items(pd.DataFrame([row])), embedded
        except MimrecError as exc:
            if image is not None and "image" not in embedded:
                raise RequestError("item", f"{exc}; the photo cannot stand in: this run serves "
                                           f"text-only vectors (index source {self.source!r})"
                                   ) from None
            raise RequestError("item", str(exc)) from None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def jsonable(value: Any) -> Any:
    """A field value as JSON holds it (numpy arrays and scalars as lists and numbers, NaN as
    null)."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
