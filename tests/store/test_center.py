import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mimrec.errors import MimrecError
from mimrec.store.center import (
    RepresentationCenter,
    StoreInfo,
    UnknownItemError,
    upsert,
    write_version,
)

INFO = StoreInfo(encoder="csft", encoder_hash="abc123", dim=8)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array([str(i) for i in range(1, 101)])
    vectors = rng.normal(size=(100, 8)).astype(np.float32)
    write_version(tmp_path / "store", ids, vectors, INFO)
    return tmp_path / "store", ids, vectors


def test_build_lookup_round_trip(store):
    folder, ids, vectors = store
    center = RepresentationCenter(folder)
    assert center.version == 1 and len(center) == 100 and center.dim == 8
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
    v = upsert(folder, ["new", "3"], np.ones((2, 8), dtype=np.float32))
    assert v == 2
    center = RepresentationCenter(folder)
    assert len(center) == 101
    np.testing.assert_array_equal(center.lookup(["new", "3"]), np.ones((2, 8)))
    old = RepresentationCenter(folder, version=1)
    np.testing.assert_array_equal(old.lookup(["3"]), vectors[[2]])
    assert "new" not in old and center.manifest["parent"] == 1


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


def test_a_writer_killed_half_way_leaves_the_old_version_readable(store):
    """Kill an upsert in a subprocess while it writes, then read: version 1 is intact."""
    folder, ids, vectors = store
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        import mimrec.store.center as c
        real = c._fsync_write
        def dying_write(path, data):
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        c._fsync_write = dying_write
        c.upsert({str(folder)!r}, ["x"], np.zeros((1, 8), dtype=np.float32))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode == -9
    center = RepresentationCenter(folder)
    assert center.version == 1 and "x" not in center
    np.testing.assert_array_equal(center.vectors, vectors)
    assert upsert(folder, ["x"], np.zeros((1, 8), dtype=np.float32)) >= 2  # still writable
