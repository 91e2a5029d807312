"""The public Python API (``mimrec.load_run``) on a small finished run, and the README's example
script run as a user runs it. (Here beside the serving tests: it reads the same run fixture.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mimrec
from mimrec.errors import MimrecError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(trained_run):
    return mimrec.load_run(trained_run, "ciubm")


def test_the_readme_example_runs_on_a_real_run(trained_run):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), str(trained_run)],
                       capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"Run({str(trained_run)!r}, model=")
    scores = json.loads(next(x for x in lines if x.startswith("scores:")).split(":", 1)[1])
    assert len(scores) == 5 and all(0 < s < 1 for s in scores)
    assert "new item vector: (1, 128)" in lines and "stored vectors: (5, 128)" in lines
    assert any(x.startswith("valid-best model: ") for x in lines)


def test_scores_follow_the_candidates(run):
    ids = run.items["item_id"].tolist()
    history, candidates = ids[:8], ids[10:30]
    scores = run.score(history, candidates)
    assert scores.shape == (20,) and np.all((scores > 0) & (scores < 1))
    order = np.random.default_rng(0).permutation(20)
    np.testing.assert_allclose(run.score(history, [candidates[i] for i in order]),
                               scores[order], rtol=1e-5, atol=1e-6)
    with pytest.raises(MimrecError, match="unknown item ids: 'nope'"):
        run.score(history, ["nope"])


def test_encode_items_gives_the_vectors_the_store_holds(run):
    items = run.items.iloc[:6]
    ids = items["item_id"].tolist()
    np.testing.assert_allclose(run.encode_items(items), run.store.lookup(ids), atol=1e-5)


def test_report_and_model_are_the_runs(run, trained_run):
    assert run.report == json.loads((trained_run / "report.json").read_text())
    assert run.model.startswith("ciubm-seed") and "ciubm" in repr(run)


def test_the_text_model_export_loads_in_transformers(run, tmp_path):
    from transformers import AutoModel

    folder = run.export_text_model(tmp_path / "text")
    assert (folder / "modules.json").is_file() and (folder / "2_Dense" / "config.json").is_file()
    dense = json.loads((folder / "2_Dense" / "config.json").read_text())
    assert dense["out_features"] == run.store.dim
    assert AutoModel.from_pretrained(folder, local_files_only=True).config.hidden_size == \
        dense["in_features"]


@pytest.mark.slow
def test_the_onnx_graph_scores_what_run_score_scores(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ids = run.items["item_id"].tolist()
    history, candidates = ids[:8], ids[10:30]
    path = run.export_onnx(tmp_path / "ctr.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, run.indices(history, candidates))[0]
    np.testing.assert_allclose(got, run.score(history, candidates), atol=1e-5)
