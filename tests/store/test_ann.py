"""The similarity route's ANN index: built on request, used by the follower's search, close to
the exact answer, and complete for rows added after the build."""

from __future__ import annotations

import numpy as np
import pytest

from mimrec.errors import MimrecError
from mimrec.store.ann import build_ann_index, has_ann_index, partitions, sub_vectors
from mimrec.store.center import StoreInfo, upsert, write_version
from mimrec.store.commands import run_store_action
from mimrec.store.follow import StoreFollower

DIM = 16


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(50, DIM))
    v = centers[rng.integers(0, 50, n)] + 0.4 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ann") / "csft"
    vectors = clustered(10_000)
    ids = np.array([f"i{k}" for k in range(len(vectors))])
    write_version(folder, ids, vectors, StoreInfo("csft", "h", DIM))
    lines: list[str] = []
    run_store_action("ann", folder, echo=lines.append)
    assert "ANN index on 10,000 vectors (100 partitions, 2 PQ sub-vectors)" in lines[-1]
    return folder, ids, vectors


def test_the_index_answers_close_to_the_exact_search(store):
    folder, ids, vectors = store
    assert has_ann_index(folder)
    follower = StoreFollower(folder)
    recalls = []
    for q in range(0, 2000, 100):
        exact = ids[np.argsort(-(vectors @ vectors[q]), kind="stable")[:10]]
        hits = follower.similar(vectors[q], 10)
        assert hits[0][0] == ids[q] and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))  # nearest first
        recalls.append(len({i for i, _ in hits} & set(exact)) / 10)
    assert np.mean(recalls) >= 0.9


def test_items_added_after_the_build_are_found(store):
    folder, ids, vectors = store
    upsert(folder, ["late"], vectors[7][None, :])  # not in the index: searched exactly, merged
    hits = dict(StoreFollower(folder).similar(vectors[7], 3))
    assert {"late", ids[7]} <= set(hits) and hits["late"] == pytest.approx(1.0, abs=1e-5)


def test_a_small_store_is_refused_with_the_reason(tmp_path):
    write_version(tmp_path / "s", np.array(["a", "b"]), clustered(2), StoreInfo("csft", "h", DIM))
    with pytest.raises(MimrecError, match="2 items; an ANN index pays off from 10,000"):
        build_ann_index(tmp_path / "s")
    assert not has_ann_index(tmp_path / "s")


def test_index_shapes_follow_the_table():
    assert (sub_vectors(128), sub_vectors(384), sub_vectors(16), sub_vectors(6)) == (16, 48, 2, 1)
    assert (partitions(10_000), partitions(1_000_000), partitions(10**9)) == (100, 1000, 4096)
