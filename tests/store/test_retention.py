"""Retention, gc, rollback, migration from the Arrow-file format, and following a store."""

import json
import threading

import numpy as np
import pyarrow as pa
import pytest

from mimrec.cli import main
from mimrec.errors import MimrecError
from mimrec.store import retention as retention_module
from mimrec.store.center import RepresentationCenter, StoreInfo, current_version, upsert, write_version
from mimrec.store.follow import StoreFollower
from mimrec.store.retention import Maintainer, Retention, folder_bytes, gc, rollback, versions

INFO = StoreInfo(encoder="csft", encoder_hash="abc123", dim=4)


@pytest.fixture
def store(tmp_path):
    ids = np.array([str(i) for i in range(1, 51)])
    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    write_version(tmp_path / "run" / "index" / "csft", ids, vectors, INFO)
    return tmp_path / "run" / "index" / "csft", ids, vectors


def test_retention_keeps_the_last_k_versions_and_bounds_the_disk(store):
    folder, ids, vectors = store
    keep = Retention(keep_versions=3, maintain_every=5)
    for k in range(40):
        upsert(folder, [f"n{k}"], np.full((1, 4), k, np.float32), retention=keep)
    Maintainer.of(folder).wait()  # the tidies run in the background
    kept = [v["version"] for v in versions(folder)]
    assert len(kept) <= 3 + keep.maintain_every  # tidied every 5 commits
    center = RepresentationCenter(folder)
    np.testing.assert_array_equal(center.lookup([f"n{k}" for k in range(40)])[:, 0], range(40))
    grown = folder_bytes(folder)
    report = gc(folder, keep=1)
    assert report["versions"] == [report["latest"]] and report["bytes"] <= grown
    assert len(RepresentationCenter(folder)) == 90  # nothing lost
    with pytest.raises(MimrecError, match=r"version 1 does not exist \(kept versions: "):
        RepresentationCenter(folder, version=1)


def test_the_acknowledged_write_is_the_commit_alone_and_the_tidy_follows(store, monkeypatch):
    """An upsert that makes a tidy due returns before the tidy runs (in a background thread,
    under the writer lock); inline, the tidy is part of the write."""
    folder, _, _ = store
    release, tidied = threading.Event(), []
    real = retention_module._tidy

    def slow_tidy(*args, **kwargs):
        release.wait(30)
        tidied.append(threading.current_thread().name)
        real(*args, **kwargs)

    monkeypatch.setattr(retention_module, "_tidy", slow_tidy)
    every = Retention(maintain_every=1)
    upsert(folder, ["bg-1"], np.ones((1, 4), np.float32), retention=every)
    assert tidied == [] and "bg-1" in RepresentationCenter(folder)  # returned, tidy blocked
    release.set()
    Maintainer.of(folder).wait(30)
    assert tidied == ["mimrec-store-tidy"]  # in the background thread, after the commit
    upsert(folder, ["bg-2"], np.ones((1, 4), np.float32),
           retention=Retention(maintain_every=1, background=False))
    assert tidied[-1] == threading.current_thread().name


def test_retention_settings_are_range_checked():
    for bad in ({"keep_versions": 0}, {"maintain_every": -1}, {"fragment_rows": 0}):
        with pytest.raises(ValueError, match="out of range"):
            Retention(**bad)


def test_rollback_makes_an_old_version_latest_and_a_follower_reloads(store):
    folder, ids, vectors = store
    first = current_version(folder)
    follower = StoreFollower(folder)
    upsert(folder, ["new"], np.ones((1, 4), np.float32))
    upsert(folder, ["1"], np.full((1, 4), 7, np.float32))  # a replacement
    changes = follower.changes(first)
    assert not changes.complete and sorted(changes.ids) == ["1", "new"]
    assert follower.latest() == changes.version == current_version(folder)
    back = rollback(folder, first)
    assert back == current_version(folder) > changes.version
    center = RepresentationCenter(folder)
    assert "new" not in center and len(center) == 50
    np.testing.assert_array_equal(center.lookup(ids), vectors)
    after = follower.changes(changes.version)  # every row rewritten: a follower reloads
    assert after.complete and sorted(after.ids) == sorted(ids)
    with pytest.raises(MimrecError, match="already the latest"):
        rollback(folder, back)


def _legacy_store(folder, ids, vectors, info):
    """A store as mimrec wrote it before LanceDB (Arrow IPC file + manifest + CURRENT.json)."""
    folder.mkdir(parents=True)
    flat = pa.array(vectors.ravel())
    table = pa.table({"item_id": pa.array(ids), "vector": pa.FixedSizeListArray.from_arrays(
        flat, info.dim)})
    with pa.OSFile(str(folder / "v000002.arrow"), "wb") as sink, \
            pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    (folder / "v000002.json").write_text(json.dumps({"version": 2, "info": info.__dict__,
                                                     "dim": info.dim}))
    (folder / "CURRENT.json").write_text(json.dumps({"version": 2}))


def test_an_old_store_is_a_one_line_error_then_migrates_with_one_command(tmp_path, capsys):
    ids = np.array(["a", "b", "c"])
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    folder = tmp_path / "run" / "index" / "raw"
    _legacy_store(folder, ids, vectors, INFO)
    with pytest.raises(MimrecError) as err:
        RepresentationCenter(folder)
    message = str(err.value)
    assert "\n" not in message and f"mimrec store migrate {tmp_path / 'run'}" in message
    assert main(["store", "migrate", str(tmp_path / "run")]) == 0
    assert "migrated 3 items" in capsys.readouterr().out
    center = RepresentationCenter(folder)
    np.testing.assert_array_equal(center.lookup(ids), vectors)
    assert center.info == INFO and not list(folder.glob("v0*")) and not (folder / "CURRENT.json"
                                                                         ).exists()
    assert main(["store", "migrate", str(tmp_path / "run")]) == 0  # again: nothing to do
    assert "nothing to do" in capsys.readouterr().out


def test_store_commands_gc_versions_and_rollback(store, capsys):
    folder, ids, vectors = store
    run = folder.parent.parent
    first = current_version(folder)
    upsert(folder, ["x"], np.ones((1, 4), np.float32))
    assert main(["store", "versions", str(run)]) == 0
    assert f"{first} (50 rows" in capsys.readouterr().out
    assert main(["store", "rollback", str(run), "--version", str(first)]) == 0
    assert "x" not in RepresentationCenter(folder)
    assert main(["store", "gc", str(run), "--keep", "2"]) == 0
    assert "versions kept" in capsys.readouterr().out and len(versions(folder)) == 2
    assert main(["store", "gc", str(run), "--keep", "0"]) == 2
    assert "--keep: store.keep_versions = 0 is out of range" in capsys.readouterr().err
    assert main(["store", "rollback", str(run), "--version", "1"]) == 2
    assert "version 1 does not exist" in capsys.readouterr().err
    assert main(["store", "gc", str(run), "--source", "nope"]) == 2
    assert "no store at" in capsys.readouterr().err


def test_a_follower_reads_only_new_fragments_and_agrees_with_a_full_scan(store):
    """changes() scans the fragments its last version lacked; compaction (same rows, merged
    fragments), a replaced id and a follower that skipped versions give what a full filter of
    the table gives."""
    folder, ids, _ = store
    follower, behind = StoreFollower(folder), StoreFollower(folder)
    start = follower.latest()
    quiet = Retention(maintain_every=1000)
    upsert(folder, ["new1"], np.ones((1, 4), np.float32), retention=quiet)
    upsert(folder, [ids[3]], np.full((1, 4), 7, np.float32), retention=quiet)  # known id
    first = follower.changes(start)
    assert sorted(first.ids) == sorted(["new1", ids[3]]) and not first.complete
    np.testing.assert_array_equal(first.vectors[list(first.ids).index(ids[3])], [7] * 4)
    gc(folder, keep=2)  # compaction: new fragments, no new rows
    tidy = follower.changes(first.version)
    assert tidy.version > first.version and len(tidy.ids) == 0 and not tidy.complete
    upsert(folder, ["new2"], np.full((1, 4), 2, np.float32), retention=quiet)
    assert list(follower.changes(tidy.version).ids) == ["new2"]
    skipped = behind.changes(start)  # opened at `start`, never moved: reads only fragments since
    assert sorted(skipped.ids) == sorted(["new1", "new2", ids[3]])
    full = StoreFollower(folder)
    assert sorted(full.changes(first.version).ids) == ["new2"]  # not opened at that version
