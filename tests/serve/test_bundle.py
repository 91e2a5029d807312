"""The serving bundle (RUN/serve): written at training time, enough to serve on its own with the
store, built once for a run of an earlier mimrec, refused when stale; browse tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimrec.ctr import bundle_format
from mimrec.ctr.bundle_format import BrowseTables, bundle_dir, bundle_problem
from mimrec.ctr.bundle_writer import ensure_serving_bundle
from mimrec.errors import MimrecError
from mimrec.serve.bundle import load_bundle
from mimrec.serve.scorer import Scorer
from tests.serve.conftest import Server

HISTORY, CANDIDATES = ["50", "172", "181", "1"], ["2", "3", "4", "100", "7"]


def _answers(run: Path, model: str) -> tuple:
    """What a scorer of the run answers: scores, a user's history, users, popular items."""
    scorer = Scorer(load_bundle(run, model))
    user = str(scorer.user_ids[0])
    return (scorer.score(HISTORY, CANDIDATES, user).tolist(), scorer.user_history(user, 1000),
            scorer.users(10), scorer.popular_items(20), scorer.describe("50"))


@pytest.mark.parametrize("model", ["din", "ciubm"])
def test_the_bundle_and_the_store_alone_serve_the_same_answers(trained_run, tmp_path, model):
    """Training wrote RUN/serve; with the data and ctr artifacts deleted the service answers
    exactly as on the whole run."""
    assert (bundle_dir(trained_run) / "bundle.json").is_file()
    assert bundle_problem(trained_run) is None
    alone = Path(shutil.copytree(trained_run, tmp_path / "run"))
    shutil.rmtree(alone / "data")
    shutil.rmtree(alone / "ctr")
    assert _answers(alone, model) == _answers(trained_run, model)


def test_a_run_without_a_bundle_is_refused_then_built_once(trained_run, tmp_path):
    old = Path(shutil.copytree(trained_run, tmp_path / "run"))
    shutil.rmtree(bundle_dir(old))
    with pytest.raises(MimrecError, match=r"serve is missing .*`mimrec serve .*` builds it"):
        load_bundle(old)
    note = ensure_serving_bundle(old)
    assert note is not None and "built" in note and str(bundle_dir(old)) in note
    assert ensure_serving_bundle(old) is None  # once
    assert _answers(old, "ciubm") == _answers(trained_run, "ciubm")
    # weights are hard links of the ctr artifact's files, not second copies
    weights = bundle_dir(old) / "weights" / "ciubm-seed0.safetensors"
    assert weights.stat().st_ino == (old / "ctr" / "ciubm-seed0.safetensors").stat().st_ino


def test_a_bundle_older_than_its_ctr_artifact_is_stale(trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    manifest = run / "ctr" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "retrained": True}))
    assert "was written before" in bundle_problem(run)
    with pytest.raises(MimrecError, match="was written before"):
        load_bundle(run)
    assert "built" in ensure_serving_bundle(run)
    assert bundle_problem(run) is None


def test_a_damaged_bundle_names_what_it_lacks(trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (bundle_dir(run) / "weights" / "din-seed0.safetensors").unlink()
    with pytest.raises(MimrecError, match="model weights missing: .*din-seed0.safetensors"):
        load_bundle(run, "din")
    (bundle_dir(run) / "vocab.json").unlink()
    with pytest.raises(MimrecError, match="the bundle lacks vocab.json"):
        load_bundle(run, "ciubm")


def test_serving_imports_neither_the_data_stage_nor_training_code(trained_run):
    forbidden = ["mimrec.data.stage", "mimrec.data.samples", "mimrec.ctr.train",
                 "mimrec.ctr.stage", "mimrec.ctr.bundle_writer", "mimrec.pipeline"]
    code = ("import sys\nfrom mimrec.serve.app import create_app\n"
            "from mimrec.serve.bundle import load_bundle\nfrom mimrec.serve.scorer import Scorer\n"
            f"create_app(Scorer(load_bundle({str(trained_run)!r}, 'ciubm')))\n"
            f"print([m for m in {forbidden!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_mimrec_serve_builds_a_missing_bundle_and_says_so(trained_run, tmp_path):
    old = Path(shutil.copytree(trained_run, tmp_path / "run"))
    shutil.rmtree(bundle_dir(old))
    server = Server(old)
    try:
        assert server.client.get("/healthz").json()["items"] > 0
    finally:
        out = server.stop()
    assert out.count("built") == 1 and str(bundle_dir(old)) in out


def test_browse_tables_keep_each_users_latest_positives_in_time_order(monkeypatch):
    monkeypatch.setattr(bundle_format, "BROWSE_HISTORY", 3)
    monkeypatch.setattr(bundle_format, "BROWSE_POPULAR", 2)
    user = np.array([1, 0, 1, 1, 1, 0, 1])
    item = np.array([10, 20, 11, 12, 13, 21, 14])
    time = np.array([5, 1, 1, 9, 5, 1, 2])  # user 1: ties at t=5 keep event order
    tables = BrowseTables.build(user, item, time, 3, np.array([4, 9, 9, 1]))
    assert tables.history(0).tolist() == [20, 21]
    assert tables.history(1).tolist() == [10, 13, 12]  # the last 3 of 11, 14, 10, 13, 12
    assert tables.history(2).tolist() == []  # a user without positives
    assert tables.positives.tolist() == [2, 5, 0]
    assert tables.popular.tolist() == [1, 2]  # most trained on first, ties in catalogue order


def test_browse_tables_round_trip_and_map_histories_from_disk(tmp_path):
    tables = BrowseTables.build(np.array([0, 0, 1]), np.array([3, 4, 5]), np.array([2, 1, 0]),
                                2, np.array([1, 2, 3, 4, 5, 6]))
    tables.save(tmp_path)
    loaded = BrowseTables.load(tmp_path, tables.positives)
    assert isinstance(loaded.items, np.memmap)
    assert [loaded.history(u).tolist() for u in (0, 1)] == [[4, 3], [5]]
    assert loaded.popular.tolist() == tables.popular.tolist()
