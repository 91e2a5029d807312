"""Acceptance of issue #18 (onboarding): a small shop catalogue with photos and categories and
no attributes goes through `mimrec init`, `mimrec run` with no --set, and `mimrec serve`.

The slow test uses the packaged text and image weights exactly as a user would; the default
suite runs the same path with tiny towers written into the config init made (an edit a user
could make, still no --set)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimrec.store.center import RepresentationCenter
from tests.catalogue import COLOURS, build_catalogue
from tests.encoders.tiny_towers import save_tiny_image_weights, save_tiny_text_model
from tests.serve.conftest import TOKEN, Server

AUTH = {"Authorization": f"Bearer {TOKEN}"}


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
    # mimrec init's config trains each content model's shuffled-content control too
    assert set(report["models"]) == {"din", "ciubm", "ciubm_shuffled"}
    assert report["valid_best"] != "ciubm_shuffled"
    assert (out / "config.toml").is_file()
    r = mimrec("eval", "--out", out)  # the run folder remembers its config
    assert r.returncode == 0, r.stderr


def photo(rgb: tuple[int, int, int]) -> tuple[bytes, str]:
    """A 16x16 PNG of one colour: (bytes, base64 text)."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(png, format="PNG")
    return png.getvalue(), base64.b64encode(png.getvalue()).decode()


def serve_and_score(out: Path) -> None:
    """`mimrec serve RUN` (the valid-best model, no flags), then a new item with a photo and a
    category through the API, scored at once. Where the valid-best model is DIN (the tiny
    towers' run), adding is refused with the flag to use, and the content model is served."""
    server = Server(out, TOKEN, model=None)
    best = json.loads((out / "report.json").read_text())["valid_best"]
    if not best.startswith("ciubm"):
        try:
            r = server.client.post("/v1/items", headers=AUTH, json={"item_id": "x", "title": "x"})
        finally:
            server.stop()
        assert r.status_code == 409 and "--model ciubm" in r.json()["detail"][0]["problem"]
        server = Server(out, TOKEN, model="ciubm")
    try:
        c = server.client
        history = ["sku0", "sku4", "sku8"]  # mugs
        candidates = ["sku1", "sku2", "sku5", "sku12"]  # sku5 has no content: scored by its ID
        r = c.post("/v1/score", json={"history": history, "candidates": candidates,
                                      "user_id": "u1"})
        assert r.status_code == 200, r.text
        scores = r.json()["scores"]
        assert len(scores) == 4 and all(0 < s < 1 for s in scores)

        png, b64 = photo(COLOURS["mugs"])
        r = c.post("/v1/items", headers=AUTH, json={
            "item_id": "sku-new", "title": "Ceramic tea mug", "category": "mugs",
            "brand": "brand1", "image": b64})
        assert r.status_code == 201, r.text
        item = r.json()
        assert item["has_image"] and item["unknown_values"] == {}
        assert item["fields"]["category"] == "mugs" and not item["in_training_catalogue"]
        used = item["fields"]["embedded_from"]
        assert {"title", "category", "brand"} <= set(used)
        # the photo enters the vector when the served store holds fused image+text vectors,
        # else it is kept for the page and the answer says so
        assert ("image" in used) == (not item["notes"])
        assert c.get("/v1/items/sku-new/image").content == png
        r = c.post("/v1/items", headers=AUTH, json={
            "item_id": "sku-toy", "title": "Wooden toy train", "category": "toys",
            "image": photo((120, 80, 40))[1]})
        assert r.json()["unknown_values"] == {"category": ["toys"]}  # read as no value
        r = c.post("/v1/score", json={"history": history,
                                      "candidates": ["sku-new", "sku-toy", "sku1"]})
        assert r.status_code == 200, r.text
        new, toy, known = r.json()["scores"]
        assert 0 < new < 1 and 0 < toy < 1 and new != toy  # content and features differ
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
