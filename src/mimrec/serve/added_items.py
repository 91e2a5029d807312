"""The fields of items added while serving: an append-only JSON-lines log beside the store.

Each ``POST /v1/items`` appends one line ``{"item_id": ..., "fields": {...}}`` (O(1) per add,
fsynced before the store's upsert); every worker process reads only the lines appended since it
last read (O(new lines)). The latest line of an id wins. A line without its newline was cut off
by a writer that died mid-write: readers leave it alone and the next writer cuts it away before
appending. Stores written before this log kept the fields in one JSON object
(``added_items.json``, rewritten whole on every add); it is still read, first, and never
written again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from mimrec.errors import MimrecError

ADDED_ITEMS_FILE = "added_items.jsonl"
LEGACY_ADDED_ITEMS_FILE = "added_items.json"


class AddedItems(Mapping[str, dict]):
    """Item id -> the fields it was added with, following the log as other processes append.

    Not locked: :meth:`append` is called with the store's ``.added_items.lock`` held, and
    :meth:`catch_up` under the caller's own lock; lookups may run alongside either.
    """

    def __init__(self, store: Path) -> None:
        self.path = Path(store) / ADDED_ITEMS_FILE
        self._fields: dict[str, dict] = _legacy_fields(Path(store) / LEGACY_ADDED_ITEMS_FILE)
        self._offset = 0  # bytes of the log read so far (whole lines only)
        self._lines = 0
        self.catch_up()

    def __getitem__(self, key: str) -> dict:
        return self._fields[key]

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def catch_up(self) -> None:
        """Read the whole lines appended since the last read."""
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # past the last whole line
        for line in data[:end].splitlines():
            self._lines += 1
            key, fields = self._parse(line)
            self._fields[key] = fields
        self._offset += end

    def append(self, key: str, fields: dict) -> None:
        """Add (or replace) ``key``'s fields: one line, on disk (fsync) before this returns.
        The caller holds the store's cross-process lock for added items."""
        self.catch_up()  # other processes' lines first: this line goes after them
        line = json.dumps({"item_id": key, "fields": fields}, default=str).encode() + b"\n"
        with open(self.path, "ab") as log:
            if log.tell() > self._offset:  # a torn last line (a writer died mid-write)
                log.truncate(self._offset)
            log.write(line)
            log.flush()
            os.fsync(log.fileno())
        self._offset += len(line)
        self._lines += 1
        self._fields[key] = fields

    def _parse(self, line: bytes) -> tuple[str, dict]:
        try:
            entry = json.loads(line)
            key, fields = entry["item_id"], entry["fields"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise MimrecError(f"{self.path}, line {self._lines}: not an added item's record "
                              f"({type(exc).__name__}: {exc})") from None
        if not isinstance(key, str) or not isinstance(fields, dict):
            raise MimrecError(f"{self.path}, line {self._lines}: not an added item's record "
                              "(item_id must be a string, fields an object)")
        return key, fields


def _legacy_fields(path: Path) -> dict[str, dict]:
    """The fields of a store written before the log (one JSON object), or none."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MimrecError(f"{path}: not valid JSON ({exc})") from None
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) \
        else {}
