"""The added items' log (serve/added_items.py): appends, followers, a torn last line, the old
single-JSON file, a broken line."""

from __future__ import annotations

import json

import pytest

from mimrec.errors import MimrecError
from mimrec.serve.added_items import (
    ADDED_ITEMS_FILE,
    LEGACY_ADDED_ITEMS_FILE,
    AddedItems,
    append_record,
)


def _append(items: AddedItems, key: str, fields: dict) -> None:
    """Append as a serving process does, then read the log back like it."""
    append_record(items.path, key, fields)
    items.catch_up()


def test_appends_are_one_line_each_and_another_reader_follows(tmp_path):
    writer, reader = AddedItems(tmp_path), AddedItems(tmp_path)
    _append(writer, "a", {"title": "first"})
    _append(writer, "b", {"title": "second"})
    _append(writer, "a", {"title": "first, again"})  # the latest line of an id wins
    lines = (tmp_path / ADDED_ITEMS_FILE).read_text().splitlines()
    assert [json.loads(x)["item_id"] for x in lines] == ["a", "b", "a"]
    assert "a" not in reader
    reader.catch_up()
    assert dict(reader) == {"a": {"title": "first, again"}, "b": {"title": "second"}}
    _append(reader, "c", {"title": "third"})  # a second writer appends after the first's lines
    writer.catch_up()
    assert list(writer) == ["a", "b", "c"] and len(AddedItems(tmp_path)) == 3


def test_a_torn_last_line_is_skipped_by_readers_and_cut_by_the_next_writer(tmp_path):
    _append(AddedItems(tmp_path), "a", {"title": "kept"})
    with open(tmp_path / ADDED_ITEMS_FILE, "ab") as log:
        log.write(b'{"item_id": "b", "fie')  # a writer killed mid-line
    items = AddedItems(tmp_path)
    assert dict(items) == {"a": {"title": "kept"}}
    _append(items, "c", {"title": "after"})
    text = (tmp_path / ADDED_ITEMS_FILE).read_text()
    assert '"b"' not in text and text.count("\n") == 2
    assert dict(AddedItems(tmp_path)) == {"a": {"title": "kept"}, "c": {"title": "after"}}


def test_a_store_written_before_the_log_keeps_its_items(tmp_path):
    (tmp_path / LEGACY_ADDED_ITEMS_FILE).write_text(json.dumps({"old": {"title": "legacy"}}))
    items = AddedItems(tmp_path)
    _append(items, "new", {"title": "logged"})
    assert dict(AddedItems(tmp_path)) == {"old": {"title": "legacy"}, "new": {"title": "logged"}}
    assert json.loads((tmp_path / LEGACY_ADDED_ITEMS_FILE).read_text()) == {
        "old": {"title": "legacy"}}  # never rewritten


@pytest.mark.parametrize("line", [b"not json\n", b'{"item_id": 5, "fields": {}}\n',
                                  b'{"fields": {}}\n'])
def test_a_broken_line_is_one_error_naming_the_file_and_line(tmp_path, line):
    _append(AddedItems(tmp_path), "a", {})
    with open(tmp_path / ADDED_ITEMS_FILE, "ab") as log:
        log.write(line)
    with pytest.raises(MimrecError, match=rf"{ADDED_ITEMS_FILE}, line 2: not an added item"):
        AddedItems(tmp_path)
