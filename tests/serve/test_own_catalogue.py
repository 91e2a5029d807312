"""Acceptance of issue #18 (onboarding): a small shop catalogue with photos and categories and
no attributes goes through `mimrec init`, `mimrec run` with no --set, and `mimrec serve`.

The slow test uses the packaged text and image weights exactly as a user would; the default
suite runs the same path with tiny towers written into the config init made (an edit a user
could make, still no --set)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimrec.store.center import RepresentationCenter
from tests.catalogue import build_catalogue
from tests.encoders.tiny_towers import save_tiny_image_weights, save_tiny_text_model
from tests.serve.conftest import Server


def mimrec(*args):
    return subprocess.run([sys.executable, "-m", "mimrec", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


def onboard(tmp_path: Path, tiny: bool) -> tuple[Path, Path, str]:
    """Catalogue -> init -> run; returns (data folder, run folder, run stdout)."""
    shop = build_catalogue(tmp_path / "shop", no_content=(5, 9))  # two with nothing to embed
    config = tmp_path / "shop.toml"
    r = mimrec("init", shop, "--out", config)
    assert r.returncode == 0, r.stderr
    if tiny:
        text = save_tiny_text_model(tmp_path / "bert")
        image = save_tiny_image_weights(tmp_path / "lite0.safetensors")
        config.write_text(config.read_text().replace(
            "[encoder]\n", f'[encoder]\ntext_model = "{text}"\nimage_model = "{image}"\n'))
    out = tmp_path / "runs" / "shop"
    r = mimrec("run", config, "--out", out)
    assert r.returncode == 0, r.stderr
    return shop, out, r.stdout


def check_run(out: Path, stdout: str) -> None:
    data = json.loads((out / "data" / "manifest.json").read_text())["metrics"]
    assert data["no_content_items"] == 2 and data["no_content_examples"] == ["sku5", "sku9"]
    assert "2 items have no usable content" in stdout
    for source in ("raw", "pretrain", "csft"):  # the fallback: zero content vectors
        vectors = RepresentationCenter(out / "index" / source).lookup(["sku5", "sku9", "sku1"])
        assert np.all(vectors[:2] == 0) and np.linalg.norm(vectors[2]) > 0.99
    report = json.loads((out / "report.json").read_text())
    edges = report["buckets"]["edges"]
    assert len(edges) >= 2 and all(e["test_rows"] > 0 for e in edges.values())  # none empty
    assert sum(e["test_rows"] for e in edges.values()) == report["data"]["test"]["events"]
    for m in report["models"].values():
        assert all(b["n"] > 0 for b in m["buckets"].values())
    assert set(report["models"]) == {"din", "ciubm"}
    assert (out / "config.toml").is_file()
    r = mimrec("eval", "--out", out)  # the run folder remembers its config
    assert r.returncode == 0, r.stderr


def serve_and_score(out: Path) -> None:
    server = Server(out)
    try:
        history = ["sku0", "sku4", "sku8"]
        candidates = ["sku1", "sku2", "sku5", "sku12"]  # sku5 has no content: scored by its ID
        r = server.client.post("/v1/score", json={"history": history, "candidates": candidates,
                                                  "user_id": "u1"})
        assert r.status_code == 200, r.text
        scores = r.json()["scores"]
        assert len(scores) == 4 and all(0 < s < 1 for s in scores)
    finally:
        server.stop()


def test_own_catalogue_with_tiny_towers(tmp_path):
    _, out, stdout = onboard(tmp_path, tiny=True)
    check_run(out, stdout)
    serve_and_score(out)


@pytest.mark.slow
def test_own_catalogue_with_the_packaged_weights(tmp_path):
    _, out, stdout = onboard(tmp_path, tiny=False)
    check_run(out, stdout)
    serve_and_score(out)
