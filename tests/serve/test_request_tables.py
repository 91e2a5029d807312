"""A large catalogue is served without whole-catalogue derived tables: each request computes the
rows it names. Forced on a small bundle (threshold 0), scores, live adds and a second worker's
adds answer as with the tables precomputed; start-up reads the store once; a supervisor of
several workers only checks the bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mimrec.errors import MimrecError
from mimrec.serve import scorer as scorer_module
from mimrec.serve.bundle import check_bundle, load_bundle
from mimrec.serve.heap import return_freed_memory, rss_mib
from mimrec.serve.scorer import Scorer
from mimrec.store import center as center_module
from mimrec.store.center import RepresentationCenter, upsert


def _requests(scorer: Scorer, n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    ids = list(scorer.catalogue.ids)
    rng = np.random.default_rng(seed)
    return [([ids[i] for i in rng.choice(len(ids), 30, replace=False)],
             [ids[i] for i in rng.choice(len(ids), 20, replace=False)]) for _ in range(n)]


def _scores(scorer: Scorer, requests: list[tuple[list[str], list[str]]]) -> np.ndarray:
    return np.stack([scorer.score(h, c, user_id=None) for h, c in requests])


def test_request_tables_score_as_the_precomputed_tables(run_copy, monkeypatch):
    full = Scorer(load_bundle(run_copy, "ciubm"))
    assert not full.request_tables and full._snapshot[1] is not None
    monkeypatch.setattr(scorer_module, "REQUEST_TABLES_ABOVE", 0)
    lean = Scorer(load_bundle(run_copy, "ciubm"))
    assert lean.request_tables and lean._snapshot[1] is None and lean._live.tables() is None
    requests = _requests(full, 8, seed=0)
    np.testing.assert_allclose(_scores(lean, requests), _scores(full, requests),
                               rtol=1e-5, atol=1e-7)
    # items added while serving: through this scorer, and by another process (followed)
    lean.add_item("req-1", {"title": "toy story comedy", "genres": ["Comedy"]}, None, None)
    dim = RepresentationCenter(lean.bundle.store).dim
    upsert(lean.bundle.store, ["req-2"],
           np.random.default_rng(1).normal(size=(1, dim)).astype(np.float32))
    lean.follow_store()
    full.follow_store()
    assert lean._live.tables() is None and full._snapshot[1] is not None
    requests = [(h + ["req-1"], c + ["req-2", "req-1"]) for h, c in _requests(full, 4, seed=1)]
    np.testing.assert_allclose(_scores(lean, requests), _scores(full, requests),
                               rtol=1e-5, atol=1e-7)


def test_the_din_model_scores_the_same_with_request_tables(trained_run, monkeypatch):
    full = Scorer(load_bundle(trained_run, "din"))
    monkeypatch.setattr(scorer_module, "REQUEST_TABLES_ABOVE", 0)
    lean = Scorer(load_bundle(trained_run, "din"))
    assert lean.request_tables and lean._snapshot[1] is None
    requests = _requests(full, 4, seed=2)
    np.testing.assert_allclose(_scores(lean, requests), _scores(full, requests),
                               rtol=1e-5, atol=1e-7)


def test_start_up_reads_the_store_once(trained_run, monkeypatch):
    reads = []
    real = center_module.RepresentationCenter.__init__

    def counting(self, *args, **kwargs):
        reads.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(center_module.RepresentationCenter, "__init__", counting)
    scorer = Scorer(load_bundle(trained_run, "ciubm"))
    assert len(reads) == 1
    assert scorer.catalogue.count == len(scorer.bundle.items) + len(scorer.bundle.added_ids)
    assert scorer.catalogue.store_version == scorer.bundle.store_read_version


def test_check_bundle_reads_no_rows_and_names_the_problems(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(center_module.RepresentationCenter, "__init__",
                        lambda *a, **k: pytest.fail("the store's rows were read"))
    key, count = check_bundle(trained_run, "ciubm")
    assert key.startswith("ciubm-seed") and count is not None and count > 0
    assert check_bundle(trained_run, "din") == (check_bundle(trained_run, "din")[0], None)
    with pytest.raises(MimrecError, match="not found"):
        check_bundle(tmp_path / "nope")
    with pytest.raises(MimrecError):
        check_bundle(trained_run, "no-such-model")


def test_heap_helpers():
    return_freed_memory()
    rss = rss_mib()
    assert rss is not None and 0 < rss[0] <= rss[1]
    assert rss_mib(2**31 - 1) is None
    assert torch.is_tensor(torch.zeros(1))  # torch still works after trimming


def test_content_normalised_in_place_equals_the_copy_bitwise(trained_run):
    model = load_bundle(trained_run, "ciubm").model
    raw = torch.randn(50, model.content.shape[1]) * 3
    model.set_content(raw.clone())
    copied = model.content
    given = raw.clone()
    model.set_content(given, in_place=True)
    assert torch.equal(model.content, copied) and model.content.data_ptr() == given.data_ptr()
