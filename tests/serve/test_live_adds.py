"""Live adds at O(items added): no catalogue-sized tensor is copied or recomputed, an added item
scores as on a server started fresh with it in the store, and requests running during adds read
one consistent snapshot."""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch

from mimrec.serve import live_tables
from mimrec.serve.bundle import load_bundle
from mimrec.serve.scorer import Scorer
from mimrec.store.center import RepresentationCenter, upsert


def _pointers(scorer: Scorer) -> list[int]:
    """Data pointers of every catalogue-sized tensor the scorer serves with."""
    model, tables, _ = scorer._snapshot
    out = [model.content.data_ptr(), model.all_items.data_ptr(), tables.vectors.data_ptr(),
           tables.content.data_ptr(), *(bag.index.data_ptr() for bag in model.items.features)]
    for value in tables.prepared.values():
        out.extend(v.data_ptr() for v in live_tables._leaves(value))
    return out


def _fresh_vectors(scorer: Scorer, n: int, seed: int) -> np.ndarray:
    dim = RepresentationCenter(scorer.bundle.store).dim
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_an_add_appends_rows_and_copies_no_catalogue_tensor(run_copy, monkeypatch):
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    live = scorer._live
    before, rows = _pointers(scorer), live.rows
    real_deepcopy = copy.deepcopy

    def deepcopy(obj, *args, **kwargs):
        assert not isinstance(obj, torch.nn.Module), "the model was copied"
        return real_deepcopy(obj, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", deepcopy)
    prepared = []
    for block in scorer.model.blocks.values():  # every block projects only the new rows
        real = block.prepare
        monkeypatch.setattr(block, "prepare",
                            lambda t, real=real: prepared.append(t.vectors.shape[0]) or real(t))
    scorer.add_item("live-1", {"title": "toy story comedy"}, None, None)
    upsert(scorer.bundle.store, ["live-2", "live-3"], _fresh_vectors(scorer, 2, 0))
    scorer.follow_store()  # another worker's two items, as one change
    assert _pointers(scorer) == before and live.grown == 0
    assert live.rows == rows + 3 and live.written == 3
    assert set(prepared) <= {1, 2}
    cat = scorer.catalogue
    assert [cat.row(k) for k in ("live-1", "live-2", "live-3")] == [rows, rows + 1, rows + 2]
    assert cat.count == rows + 2 and cat.added(3) == ["live-3", "live-2", "live-1"]


def test_added_items_score_as_on_a_server_started_with_them(run_copy):
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    trained = list(scorer.catalogue.ids[:12])
    scorer.add_item("fresh-1", {"title": "space opera adventure"}, None, None)
    upsert(scorer.bundle.store, ["fresh-2", "fresh-3"], _fresh_vectors(scorer, 2, 1))
    scorer.add_item("fresh-1", {"title": "a quiet drama"}, None, None)  # moves to a new row
    upsert(scorer.bundle.store, ["fresh-4"], _fresh_vectors(scorer, 1, 2))
    scorer.follow_store()
    assert scorer.catalogue.row("fresh-1") > scorer.catalogue.row("fresh-3")
    fresh = Scorer(load_bundle(run_copy, "ciubm"))
    added = ["fresh-1", "fresh-2", "fresh-3", "fresh-4"]
    for history in (trained[:6], trained[:3] + added, added[::-1]):
        for cands in (added, trained[6:] + added):
            np.testing.assert_allclose(scorer.score(history, cands), fresh.score(history, cands),
                                       rtol=1e-5, atol=1e-7)
    assert set(scorer.catalogue.ids) == set(fresh.catalogue.ids)
    assert scorer.describe("fresh-1")["title"] == "a quiet drama"


def test_an_earlier_snapshot_does_not_see_later_rows(run_copy):
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    upsert(scorer.bundle.store, ["snap-1"], _fresh_vectors(scorer, 1, 3))
    scorer.follow_store()
    old = scorer.catalogue
    upsert(scorer.bundle.store, ["snap-1", "snap-2"], _fresh_vectors(scorer, 2, 4))
    scorer.follow_store()
    new = scorer.catalogue
    assert old.row("snap-2") == 0 and new.row("snap-2") > 0
    assert old.row("snap-1") < new.row("snap-1")  # the old snapshot keeps the row it knew
    assert list(old.rows_of(["snap-1", "snap-2"])) == [old.row("snap-1"), 0]
    assert "snap-2" not in old.ids and list(new.ids).count("snap-1") == 1


def test_requests_during_adds_read_one_consistent_snapshot(run_copy):
    """Scores of training items do not move while items are added (headroom used up and
    reallocated on the way), and every request succeeds."""
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    live = scorer._live
    # force reallocations (clones: views of the buffers would be taken over as they are)
    live._buffers = live._allocate([v.clone() for v in live._views()], live.rows + 3)
    history, cands = list(scorer.catalogue.ids[:8]), list(scorer.catalogue.ids[8:40])
    expected = scorer.score(history, cands)
    errors, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                np.testing.assert_allclose(scorer.score(history, cands), expected, rtol=1e-6)
            except Exception as exc:  # noqa: BLE001 - collected for the main thread
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    vectors = _fresh_vectors(scorer, 40, 5)
    for i in range(0, 40, 2):
        upsert(scorer.bundle.store, [f"c-{i}", f"c-{i + 1}"], vectors[i: i + 2])
        scorer.follow_store()
        assert scorer.score(history, [f"c-{i + 1}"]).shape == (1,)
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert live.grown >= 1 and scorer.catalogue.count == len(scorer.catalogue.ids)


def test_appended_rows_equal_the_whole_table_computed_at_once(run_copy):
    """The rows LiveTables computes for new items equal catalogue_tables() of the whole model."""
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    upsert(scorer.bundle.store, [f"t-{i}" for i in range(5)], _fresh_vectors(scorer, 5, 6))
    scorer.follow_store()
    model, tables, _ = scorer._snapshot
    with torch.inference_mode():
        whole = model.catalogue_tables()
    torch.testing.assert_close(tables.vectors, whole.vectors, rtol=1e-5, atol=1e-6)
    for name, value in whole.prepared.items():
        for got, want in zip(live_tables._leaves(tables.prepared[name]),
                             live_tables._leaves(value), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_write_changes_nothing_in_memory_until_the_store_is_followed(run_copy):
    # the writer thread of a worker persists an add; requests keep their snapshot until the event
    # loop follows the store, as every other worker does
    scorer = Scorer(load_bundle(run_copy, "ciubm"))
    snapshot, known = scorer._snapshot, set(scorer.added_fields)
    written = scorer.write_item("written-1", {"title": "a heist in the rain"}, None, None)
    assert scorer._snapshot is snapshot and set(scorer.added_fields) == known
    assert scorer.catalogue.row("written-1") == 0
    described = scorer.describe_written(written)
    assert described["item_id"] == "written-1" and described["title"] == "a heist in the rain"
    assert described["store_version"] == scorer.catalogue.store_version
    assert scorer.catalogue.row("written-1") > 0 and "written-1" in scorer.added_fields


def test_start_up_holds_the_content_table_once(run_copy, monkeypatch):
    """The bundle's content table is read from the store into one array allocated with the live
    tables' headroom (the store's vector column is never read whole), and the live tables take
    that array over as their buffer instead of copying it: one catalogue-sized content array."""
    reads = []
    real = RepresentationCenter.read_vectors_into
    monkeypatch.setattr(RepresentationCenter, "read_vectors_into",
                        lambda self, out, positions, **kw: reads.append(out.shape)
                        or real(self, out, positions, **kw))
    bundle = load_bundle(run_copy, "ciubm")
    content = bundle.model.content
    rows = content.shape[0]
    assert reads == [(rows + live_tables.headroom(rows), content.shape[1])]
    scorer = Scorer(bundle)
    assert scorer.model.content.data_ptr() == content.data_ptr()  # not copied
    assert scorer._live.capacity == rows + live_tables.headroom(rows)
    center = RepresentationCenter(scorer.bundle.store)
    ids = scorer.catalogue.names
    expected = center.lookup(ids)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(scorer.model.content[1:].numpy(), expected, rtol=1e-5, atol=1e-6)
    scorer.add_item("live-1", {"title": "toy story comedy"}, None, None)  # into the headroom
    assert scorer._live.grown == 0 and scorer.model.content.data_ptr() == content.data_ptr()
