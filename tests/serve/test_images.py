"""Serving an image catalogue: item pictures are served, a new item carries an uploaded photo and
the catalogue's categorical features (looked up in the training vocabularies), and they survive a
restart."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mimrec.serve.app import create_app
from mimrec.serve.bundle import load_bundle
from mimrec.serve.scorer import Scorer

TOKEN = "write-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(seed: int, size: int = 28) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def served(image_run, tmp_path):
    run = Path(shutil.copytree(image_run, tmp_path / "run"))
    scorer = Scorer(load_bundle(run, "ciubm"))
    with TestClient(create_app(scorer, TOKEN), base_url="http://localhost") as client:
        yield run, scorer, client


def test_catalogue_pictures_are_served_as_they_were_given(served):
    run, scorer, c = served
    health = c.get("/healthz").json()
    assert health["images"] and health["item_features"] == ["class", "brand"]
    first = scorer.bundle.items.iloc[0]
    r = c.get(f"/v1/items/{first['item_id']}/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == bytes(first["image"])
    item = c.get(f"/v1/items/{first['item_id']}").json()
    assert item["has_image"] and "image" not in item["fields"]  # bytes are not described
    assert c.get("/v1/items/nope/image").status_code == 404


def test_a_new_item_carries_a_photo_and_categorical_features(served):
    run, scorer, c = served
    items = scorer.bundle.items
    cls, brand = str(items["class"].iloc[0]), str(items["brand"].iloc[0])
    photo = png(1)
    body = {"item_id": "new-photo", "title": "a new shirt", "class": cls, "brand": brand,
            "image": base64.b64encode(photo).decode()}
    r = c.post("/v1/items", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["fields"]["class"] == cls and added["unknown_values"] == {}
    assert added["has_image"]
    assert c.get("/v1/items/new-photo/image").content == photo  # the upload, byte for byte
    # the model reads the item's categorical features through the training vocabularies
    row = scorer.catalogue.row("new-photo")
    for bag, table, value in zip(scorer.model.items.features, scorer.bundle.tables.items,
                                 (cls, brand), strict=True):
        assert int(bag.index[row, 0]) == table.vocab.index(value) + 1
    history = [str(i) for i in items["item_id"].iloc[:5]]
    with_features = c.post("/v1/score", json={"history": history,
                                              "candidates": ["new-photo"]}).json()["scores"][0]
    # an unseen category: accepted, read as no value, and named in the answer
    other = {**body, "class": "Spaceship"}
    r = c.post("/v1/items", json=other, headers=AUTH)
    assert r.status_code == 201 and r.json()["unknown_values"] == {"class": ["Spaceship"]}
    row = scorer.catalogue.row("new-photo")  # a re-added item takes a new row
    assert int(scorer.model.items.features[0].index[row, 0]) == 0
    without = c.post("/v1/score", json={"history": history,
                                        "candidates": ["new-photo"]}).json()["scores"][0]
    assert with_features != pytest.approx(without, abs=1e-7)  # the category has a say
    # features and photo survive a restart
    c.post("/v1/items", json=body, headers=AUTH)
    again = Scorer(load_bundle(run, "ciubm"))
    assert int(again.model.items.features[0].index[again.catalogue.row("new-photo"), 0]) > 0
    assert again.image("new-photo") == photo
    assert again.score(history, ["new-photo"])[0] == pytest.approx(with_features, abs=1e-6)


@pytest.mark.parametrize(("value", "problem"), [
    ({"x": 1}, "expected a string or an integer"), ([1.5], "expected a string or an integer"),
    (["a\x00"], "control character")])
def test_bad_categorical_values_are_422_naming_the_field(served, value, problem):
    _, _, c = served
    r = c.post("/v1/items", json={"item_id": "bad", "title": "t", "brand": value}, headers=AUTH)
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["field"] == "brand" and problem in detail["problem"]
    r = c.post("/v1/items", json={"item_id": "bad", "colour": "red"}, headers=AUTH)
    assert r.status_code == 422 and "categorical features: class, brand" in r.text


def test_the_page_offers_pictures_and_an_upload(served):
    _, _, c = served
    page = c.get("/").text
    assert 'id="new-image" type="file"' in page and "/image\" onerror" in page
    assert "readAsDataURL" in page and "item_features" in page


def test_access_log_is_off_by_default_and_one_flag_turns_it_on(image_run, tmp_path):
    from tests.serve.conftest import Server

    run = Path(shutil.copytree(image_run, tmp_path / "run"))
    for flag, expected in (((), False), (("--access-log",), True)):
        server = Server(run, TOKEN, "--workers", "1", *flag)
        server.client.get("/v1/items?limit=3")
        server.client.get("/v1/items/nope")
        out = server.stop()
        assert ("access log: on" in out) is expected
        logged = [line for line in out.splitlines() if '"GET /v1/items' in line]
        if expected:
            assert any("/v1/items?limit=3 HTTP/1.1\" 200" in line for line in logged), out
            assert any("/v1/items/nope HTTP/1.1\" 404" in line for line in logged), out
            assert all(TOKEN not in line for line in out.splitlines())
        else:
            assert not logged, out
