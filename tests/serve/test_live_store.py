"""Live adds on the LanceDB store: what a second process sees, what an add reads, the content
similarity route, and /metrics summed over worker processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mimrec.serve.app import create_app
from mimrec.serve.bundle import load_bundle
from mimrec.serve.scorer import Scorer
from mimrec.store import follow
from mimrec.store.center import RepresentationCenter, upsert
from mimrec.store.retention import rollback

TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("live") / "run"))
    scorer = Scorer(load_bundle(run, "ciubm"))
    with TestClient(create_app(scorer, TOKEN), base_url="http://localhost") as client:
        yield scorer, client


def _trained(scorer, n):
    return [str(i) for i in scorer.catalogue.ids[:n]]


def test_an_item_written_by_another_process_is_served_on_the_next_request(served, monkeypatch):
    """Another worker's acknowledged upsert is scored on this process's very next request, and
    following it reads only the rows written since (not the catalogue)."""
    scorer, client = served
    store = scorer.bundle.store
    reads = []
    real = follow.StoreFollower.changes
    monkeypatch.setattr(follow.StoreFollower, "changes",
                        lambda self, since: reads.append(real(self, since)) or reads[-1])
    dim = RepresentationCenter(store).dim
    before = scorer.catalogue.store_version
    version = upsert(store, ["other-1"], np.ones((1, dim), np.float32))  # as another process
    r = client.post("/v1/score", json={"history": _trained(scorer, 3), "candidates": ["other-1"]})
    assert r.status_code == 200, r.text
    assert r.json()["store_version"] == version > before
    assert r.headers["X-Mimrec-Worker"] == str(os.getpid())  # the answering process
    assert [list(c.ids) for c in reads] == [["other-1"]] and not reads[0].complete
    # the served content row is the stored vector, L2-normalised by the model
    row = scorer.catalogue.row("other-1")
    np.testing.assert_allclose(scorer.model.content[row].numpy(), np.full(dim, dim ** -0.5),
                               rtol=1e-6)
    # a replacement of a training item's vector is applied at its row: no new row
    n = len(scorer.catalogue.ids)
    upsert(store, [_trained(scorer, 1)[0]], np.full((1, dim), 2.0, np.float32))
    client.post("/v1/score", json={"history": [], "candidates": _trained(scorer, 1)})
    assert len(scorer.catalogue.ids) == n and reads[-1].ids.tolist() == _trained(scorer, 1)
    np.testing.assert_allclose(scorer.model.content[1].numpy(), np.full(dim, dim ** -0.5),
                               rtol=1e-6)


def test_a_rollback_is_followed_by_a_full_reload(served):
    scorer, client = served
    store = scorer.bundle.store
    dim = RepresentationCenter(store).dim
    keep = upsert(store, ["rb-keep"], np.ones((1, dim), np.float32))
    upsert(store, ["rb-gone"], np.ones((1, dim), np.float32))
    assert client.post("/v1/score", json={"candidates": ["rb-gone"]}).status_code == 200
    rollback(store, keep)
    r = client.post("/v1/score", json={"candidates": ["rb-gone"]})
    assert r.status_code == 422 and "unknown item ids: 'rb-gone'" in r.text
    assert client.post("/v1/score", json={"candidates": ["rb-keep"]}).status_code == 200
    assert set(scorer.catalogue.ids) == set(RepresentationCenter(store).ids)


def test_similar_items_come_from_the_store_vector_search(served):
    scorer, client = served
    store = scorer.bundle.store
    center = RepresentationCenter(store)
    item = _trained(scorer, 1)[0]
    r = client.get(f"/v1/items/{item}/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    got = r.json()["similar"]
    # the exact cosine neighbours of the item's stored vector, itself left out
    unit = center.vectors / np.linalg.norm(center.vectors, axis=1, keepdims=True)
    cos = unit @ unit[center.rows([item])[0]]
    cos[center.rows([item])[0]] = -np.inf
    expected = center.ids[np.argsort(-cos, kind="stable")[:5]]
    assert [g["item_id"] for g in got] == list(expected) and item not in [g["item_id"] for g in got]
    sims = [g["similarity"] for g in got]
    assert sims == sorted(sims, reverse=True) and all(g["title"] for g in got)
    np.testing.assert_allclose(sims, np.sort(cos)[::-1][:5], atol=1e-4)
    missing = client.get("/v1/items/no-such-item/similar")
    assert missing.status_code == 404 and "unknown item id 'no-such-item'" in missing.text
    for bad in ("0", "-1", "101", "x"):
        r = client.get(f"/v1/items/{item}/similar", params={"k": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "k", r.text


def test_metrics_are_summed_over_worker_processes(tmp_path):
    """Two processes record requests in multiprocess mode; either one's /metrics shows the sum."""
    script = textwrap.dedent("""
        import sys
        from mimrec.serve.metrics import ServiceMetrics
        m = ServiceMetrics()
        for _ in range(int(sys.argv[1])):
            m.requests.labels("POST", "/v1/score", "200").inc()
        sys.stdout.write(m.render().decode())
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outs = [subprocess.run([sys.executable, "-c", script, str(n)], env=env, capture_output=True,
                           text=True, check=True).stdout for n in (3, 4)]
    line = next(x for x in outs[1].splitlines()
                if x.startswith('mimrec_requests_total{method="POST",route="/v1/score"'))
    assert float(line.split()[-1]) == 7.0
