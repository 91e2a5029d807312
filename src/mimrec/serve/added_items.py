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
from typing import BinaryIO

from mimrec.errors import MimrecError

ADDED_ITEMS_FILE = "added_items.jsonl"
LEGACY_ADDED_ITEMS_FILE = "added_items.json"
TAIL_CHUNK = 4096  # bytes read per step when looking for the log's last whole line


class AddedItems(Mapping[str, dict]):
    """Item id -> the fields it was added with, following the log as processes append to it
    (:func:`append_record`, this process's writes included).

    Not locked: :meth:`catch_up` runs under the caller's own lock; lookups may run alongside.
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


def append_record(path: Path, key: str, fields: dict) -> None:
    """Append ``key``'s fields to the log at ``path``: one line, on disk (fsync) before this
    returns. The caller holds the store's cross-process lock for added items. A torn last line
    (a writer died mid-write) is cut away first. No reader's state is touched: readers, the
    writing process's own included, pick the line up in :meth:`AddedItems.catch_up`."""
    line = json.dumps({"item_id": key, "fields": fields}, default=str).encode() + b"\n"
    with open(path, "a+b") as log:  # (appends always go to the end)
        whole = _whole_lines_end(log)
        if whole < log.tell():
            log.truncate(whole)
        log.write(line)
        log.flush()
        os.fsync(log.fileno())


def _whole_lines_end(log: BinaryIO) -> int:
    """The byte offset just past the last newline of an open log (0 without one); read from
    the end backwards, so this costs the torn tail, not the log."""
    end = log.seek(0, os.SEEK_END)
    pos = end
    while pos > 0:
        start = max(0, pos - TAIL_CHUNK)
        log.seek(start)
        cut = log.read(pos - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


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
