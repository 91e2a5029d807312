import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimrec.errors import MimrecError
from mimrec.store.center import (
    RepresentationCenter,
    StoreInfo,
    UnknownItemError,
    arrow_rows,
    current_version,
    open_table,
    upsert,
    write_version,
)
from mimrec.validation import id_problem

INFO = StoreInfo(encoder="csft", encoder_hash="abc123", dim=8)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array([str(i) for i in range(1, 101)])
    vectors = rng.normal(size=(100, 8)).astype(np.float32)
    first = write_version(tmp_path / "store", ids, vectors, INFO)
    assert first == current_version(tmp_path / "store")
    return tmp_path / "store", ids, vectors


def test_build_lookup_round_trip(store):
    folder, ids, vectors = store
    center = RepresentationCenter(folder)
    assert center.version == current_version(folder) and len(center) == 100 and center.dim == 8
    np.testing.assert_array_equal(center.lookup(["5", 7, "100"]), vectors[[4, 6, 99]])
    batch = np.array([[1, 2, 3], [10, 0, 0]])  # rows, padded (B, L)
    out = center.gather(batch)
    assert out.shape == (2, 3, 8) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), vectors[batch])


def test_unknown_id_is_a_clear_error(store):
    center = RepresentationCenter(store[0])
    with pytest.raises(UnknownItemError, match="unknown item id 'nope'"):
        center.lookup(["1", "nope"])
    aligned, known = center.aligned(["1", "nope"])
    assert known.tolist() == [True, False] and not aligned[1].any()


def test_upsert_adds_and_replaces_in_a_new_version(store):
    folder, ids, vectors = store
    first = current_version(folder)
    v = upsert(folder, ["new", "3"], np.ones((2, 8), dtype=np.float32))
    assert v == first + 1  # one commit
    center = RepresentationCenter(folder)
    assert len(center) == 101 and center.version == v
    np.testing.assert_array_equal(center.lookup(["new", "3"]), np.ones((2, 8)))
    old = RepresentationCenter(folder, version=first)
    np.testing.assert_array_equal(old.lookup(["3"]), vectors[[2]])
    assert "new" not in old and old.version == first


def test_store_of_another_encoder_or_dim_is_refused(store):
    center = RepresentationCenter(store[0])
    center.check_compatible(INFO)
    with pytest.raises(MimrecError, match="holds 8-d vectors; the model expects 16-d"):
        center.check_compatible(StoreInfo("csft", "abc123", 16))
    with pytest.raises(MimrecError, match="built by encoder csft"):
        center.check_compatible(StoreInfo("csft", "zzz", 8))


def test_not_a_store(tmp_path):
    with pytest.raises(MimrecError, match="not a Representation Center"):
        RepresentationCenter(tmp_path)


def test_a_writer_killed_before_its_commit_leaves_the_old_version_readable(store):
    """Kill an upsert in a subprocess after its data files are written but before the commit:
    the store opens at the old version, unchanged, and takes writes again."""
    folder, ids, vectors = store
    first = current_version(folder)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        import lancedb.table as t
        def dying_execute(self, *args, **kwargs):  # the rows are staged, the commit never comes
            os.kill(os.getpid(), signal.SIGKILL)
        t.LanceMergeInsertBuilder.execute = dying_execute
        import mimrec.store.center as c
        c.upsert({str(folder)!r}, ["x"], np.zeros((1, 8), dtype=np.float32))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode == -9
    center = RepresentationCenter(folder)
    assert center.version == first and "x" not in center
    np.testing.assert_array_equal(center.lookup(ids), vectors)
    assert upsert(folder, ["x"], np.zeros((1, 8), dtype=np.float32)) == first + 1  # writable


def test_kill_9_during_a_burst_of_adds_loses_no_acknowledged_item(store):
    """A writer SIGKILLed at a random moment of a burst of upserts: every upsert that returned
    (printed its id) is in the store, which opens, holds unique ids and takes writes."""
    folder, ids, vectors = store
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from mimrec.store.center import upsert
        for k in range(10_000):
            upsert({str(folder)!r}, [f"b{{k}}"], np.full((1, 8), k, dtype=np.float32))
            print(k, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 25:
            break
    proc.kill()
    acknowledged += [int(line) for line in proc.stdout]  # printed before the kill landed
    proc.wait()
    center = RepresentationCenter(folder)
    keys = [f"b{k}" for k in acknowledged]
    np.testing.assert_array_equal(center.lookup(keys)[:, 0], acknowledged)
    assert len(set(center.ids)) == len(center.ids) >= 100 + len(keys)
    assert upsert(folder, ["after"], np.zeros((1, 8), dtype=np.float32)) > center.version


@pytest.mark.parametrize("bad", ["1\x00x", "", "   ", "a\nb", "x" * 10_000, " 1", "\ud800"])
def test_the_store_refuses_bad_ids_before_writing(store, bad):
    """The id that corrupted the store through the service ("1\x00x" became a second "1")."""
    folder, ids, vectors = store
    files = sorted(str(p) for p in folder.rglob("*"))
    with pytest.raises(MimrecError, match="refused"):
        upsert(folder, [bad], np.ones((1, 8), dtype=np.float32))
    with pytest.raises(MimrecError, match="refused"):
        write_version(folder, np.array([*ids[:3], bad], dtype=object), vectors[:4], INFO)
    assert sorted(str(p) for p in folder.rglob("*")) == files  # nothing written
    center = RepresentationCenter(folder)
    assert len(set(center.ids)) == len(center.ids) == 100


def test_the_store_refuses_duplicate_ids_and_names_one(store):
    folder, ids, vectors = store
    with pytest.raises(MimrecError, match="'7' appears more than once"):
        upsert(folder, ["7", "7"], np.ones((2, 8), dtype=np.float32))
    first = current_version(folder)
    with pytest.raises(MimrecError, match="appears more than once"):
        write_version(folder, np.array(["a", "b", "a"]), vectors[:3], INFO)
    assert current_version(folder) == first


def test_a_version_with_duplicates_written_by_another_tool_is_a_clear_error(store):
    """Rows appended around :func:`upsert` (a plain LanceDB append) that repeat an id: the store
    opens with one line saying what to do."""
    folder, ids, vectors = store
    open_table(folder).add(arrow_rows(np.array(["1"]), vectors[:1], 99, INFO))
    with pytest.raises(MimrecError, match="item id '1' appears more than once.*roll back"):
        RepresentationCenter(folder)


# ids as a careless or hostile client sends them: valid ones, and every rule broken
IDS = st.one_of(st.sampled_from(["1", "2", "3", "new", "x" * 256]),
                st.text(min_size=0, max_size=12),
                st.sampled_from(["", " ", "a\x00", "b\n", "x" * 257, " c"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(IDS, min_size=1, max_size=4), min_size=1, max_size=6))
def test_any_sequence_of_upserts_keeps_the_store_sound(batches):
    """After any sequence of upserts (accepted or refused) the current version holds unique,
    valid ids whose vectors are the last ones written for them, and every older version still
    reads as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        first = write_version(folder, np.array(["1", "2"]), np.zeros((2, 4), np.float32),
                              StoreInfo("csft", "h", 4))
        expected = {"1": 0.0, "2": 0.0}
        versions = {first: dict(expected)}
        for n, batch in enumerate(batches, start=1):
            vectors = np.full((len(batch), 4), float(n), np.float32)
            valid = all(id_problem(i) is None for i in batch) and len(set(batch)) == len(batch)
            try:
                version = upsert(folder, batch, vectors)
            except MimrecError:
                assert not valid
                continue
            assert valid
            expected.update(dict.fromkeys(batch, float(n)))
            versions[version] = dict(expected)
        for version, content in versions.items():
            center = RepresentationCenter(folder, version)
            assert len(set(center.ids)) == len(center.ids) == len(content)
            assert all(id_problem(i) is None for i in center.ids)
            keys = list(content)
            np.testing.assert_array_equal(center.lookup(keys)[:, 0], [content[k] for k in keys])
        assert RepresentationCenter(folder).version == max(versions)


def test_vectors_are_copied_chunk_by_chunk_in_row_order():
    import pyarrow as pa

    from mimrec.store.center import _vectors

    rows = np.arange(24, dtype=np.float32).reshape(6, 4)
    array = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 4)
    column = pa.chunked_array([array.slice(0, 2), array.slice(2, 3), array.slice(5, 1)])
    out = _vectors(column, 4)
    assert out.dtype == np.float32 and out.flags.writeable and np.array_equal(out, rows)
    assert _vectors(pa.chunked_array([], type=array.type), 4).shape == (0, 4)


def test_vectors_stream_into_the_callers_order_without_the_whole_column(store):
    """``vectors=False`` reads the ids only; ``read_vectors_into`` puts each row where the caller
    says, a few rows at a time, across the fragments upserts leave (the version read is the one
    opened, not a later one)."""
    folder, ids, vectors = store
    upsert(folder, ["new", "3"], np.full((2, 8), 7, dtype=np.float32))  # a second fragment
    full = RepresentationCenter(folder)
    lazy = RepresentationCenter(folder, vectors=False)
    upsert(folder, ["later"], np.ones((1, 8), dtype=np.float32))  # after opening: not read
    assert list(lazy.ids) == list(full.ids) and lazy.version == full.version
    with pytest.raises(MimrecError, match="opened without its vectors"):
        lazy.lookup(["1"])
    positions = np.random.default_rng(1).permutation(len(lazy)) + 1
    out = np.zeros((len(lazy) + 1, 8), np.float32)
    lazy.read_vectors_into(out, positions, batch_rows=7)
    np.testing.assert_array_equal(out[positions], full.vectors)
    assert not out[0].any()
