"""Hostile and careless requests against the app in-process: ids, content, images, tokens, hosts,
size and time limits, unexpected errors. Each case of issue 17 has its regression test here."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mimrec.serve.app import create_app
from mimrec.serve.bundle import load_bundle
from mimrec.serve.scorer import Scorer
from mimrec.store.center import RepresentationCenter
from tests.png_bombs import declared_png

WRITE, READ = "write-token", "read-token"
W = {"Authorization": f"Bearer {WRITE}"}
R = {"Authorization": f"Bearer {READ}"}


@pytest.fixture(scope="module")
def scorer(trained_run, tmp_path_factory) -> Scorer:
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("hardening") / "run"))
    return Scorer(load_bundle(run, "ciubm"))


@pytest.fixture(scope="module")
def client(scorer) -> TestClient:
    app = create_app(scorer, WRITE, read_token=READ)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        yield c


def _refused(response, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert any(field in d["field"] for d in body["detail"]), body
    return " ".join(d["problem"] for d in body["detail"])


def _store_state(scorer):
    center = RepresentationCenter(scorer.bundle.store)
    return center.version, len(center.ids), len(set(center.ids))


BAD_IDS = ["1\x00x", "", "   ", "a\nb", "x" * 10_000, "x" * (1 << 20), " 1", "\ud800",
           10**300]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v)[:12])
def test_bad_item_ids_are_422_and_the_store_stays_sound(client, scorer, bad):
    """"1\\x00x" used to answer 404 and write a version holding id "1" twice (every later add
    a plain-text 500); a 10 KB id took ~20 s and slowed every later add; a 1 MiB id killed the
    worker; empty, blank and multi-line ids were accepted."""
    before = _store_state(scorer)
    body = json.dumps({"item_id": bad, "title": "x"}).encode()  # ASCII: lone surrogates too
    r = client.post("/v1/items", content=body, headers={**W, "Content-Type": "application/json"})
    _refused(r, 422, "item_id")
    assert len(r.content) < 2_000  # the id is not echoed back whole
    assert _store_state(scorer) == before
    version, n, unique = before
    ok = client.post("/v1/items", json={"item_id": f"ok-{version}", "title": "a film"}, headers=W)
    assert ok.status_code == 201, ok.text
    assert _store_state(scorer) == (version + 1, n + 1, unique + 1)


@pytest.mark.parametrize("field, value, problem", [
    ("title", "Infinity", "must be finite"),
    ("title", "NaN", "must be finite"),
    ("title", '"a\\u0000b"', "control character"),
    ("title", json.dumps("x" * 20_000), "at most 10,000 characters"),
    ("title", '["a", 1]', "strings only"),
    ("title", "true", "boolean"),
    ("attributes", '["genre:x", "b\\nad"]', "a token must not contain control characters"),
    ("attributes", json.dumps(["t"] * 1001), "at most 1,000 tokens"),
])
def test_bad_content_fields_are_422_naming_the_field(client, scorer, field, value, problem):
    before = _store_state(scorer)
    body = f'{{"item_id": "content-case", "{field}": {value}}}'.encode()
    r = client.post("/v1/items", content=body, headers={**W, "Content-Type": "application/json"})
    assert problem in _refused(r, 422, field)
    assert _store_state(scorer) == before


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(10_000, 10_000), (30_000, 30_000)])
def test_an_image_bomb_is_a_422_naming_the_image(client, size):
    """A 12 KB PNG declaring 10000 x 10000 decoded to a 286 MiB array; a larger one raised
    PIL's decompression-bomb error (not a request error)."""
    image = base64.b64encode(declared_png(*size)).decode()
    r = client.post("/v1/items", json={"item_id": "bomb", "title": "x", "image": image},
                    headers=W)
    assert "pixels" in _refused(r, 422, "image") or "bomb" in r.text


@pytest.mark.parametrize("path", ["/v1/users", "/v1/users/1/history?limit=3", "/metrics"])
def test_users_data_and_metrics_need_a_token(client, path):
    """Every user's behaviour history and /metrics were open to anyone reaching the port."""
    _refused(client.get(path), 401, "Authorization")
    _refused(client.get(path, headers={"Authorization": "Bearer nope"}), 401, "Authorization")
    assert client.get(path, headers=R).status_code == 200
    assert client.get(path, headers=W).status_code == 200  # the write token reads too


def test_the_read_token_cannot_write_and_open_routes_stay_open(client):
    r = client.post("/v1/items", json={"item_id": "r1", "title": "x"}, headers=R)
    assert "wrong token" in _refused(r, 401, "Authorization")
    assert r.headers["www-authenticate"] == "Bearer"
    for path in ("/healthz", "/v1/items?limit=3", "/openapi.json", "/"):
        assert client.get(path).status_code == 200, path


def test_without_tokens_browsing_and_writes_are_off(scorer):
    with TestClient(create_app(scorer), base_url="http://localhost") as c:
        assert "MIMREC_READ_TOKEN" in _refused(c.get("/v1/users"), 403, "Authorization")
        assert "MIMREC_API_TOKEN" in _refused(c.post("/v1/items", json={}), 403,
                                              "Authorization")
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("host, status", [
    ("evil.example", 400), ("localhost.evil.example:8000", 400), ("127.0.0.1.nip.io", 400),
    ("localhost", 200), ("localhost:8000", 200), ("127.0.0.1:8000", 200), ("[::1]:8000", 200),
])
def test_only_trusted_hosts_are_served(client, host, status):
    """A web page reaching a loopback service by DNS rebinding sends its own host name."""
    r = client.get("/healthz", headers={"Host": host})
    assert r.status_code == status
    if status == 400:
        _refused(r, 400, "Host")


def test_the_token_is_checked_before_the_body_is_read(client):
    broken = b'{"item_id": '
    r = client.post("/v1/items", content=broken, headers={"Content-Type": "application/json"})
    _refused(r, 401, "Authorization")  # not 400 "malformed JSON": the body was never parsed
    big = b"x" * (9 * 1024 * 1024)
    _refused(client.post("/v1/items", content=big), 401, "Authorization")
    assert "malformed JSON" in _refused(
        client.post("/v1/items", content=broken, headers={**W, "Content-Type":
                                                          "application/json"}), 400, "body")


def test_oversized_headers_are_431(client):
    r = client.get("/healthz", headers={"X-Padding": "a" * 20_000})
    assert "16,384-byte limit" in _refused(r, 431, "headers")


def test_an_unexpected_error_is_a_json_500(client, scorer, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(scorer, "score_at_version", broken)  # what the route calls
    r = client.post("/v1/score", json={"candidates": ["1"]})
    assert "RuntimeError" in _refused(r, 500, "server")
    assert r.json()["error"] == "internal error"


def test_a_body_that_does_not_arrive_in_time_is_a_408(scorer):
    """A client trickling its body holds no handler past the body timeout."""
    app = create_app(scorer, WRITE, body_timeout=0.2)
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": b'{"candidates": ', "more_body": True}]

    async def receive() -> dict:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/score", "raw_path": b"/v1/score",
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("localhost", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"content-length", b"100")]}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    assert sent[0]["status"] == 408
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["detail"][0]["field"] == "body" and "0.2 s" in body["detail"][0]["problem"]


def test_only_a_busy_worker_of_several_hands_a_connection_over():
    from mimrec.serve.protocol import RECYCLE_AFTER, should_recycle

    assert should_recycle(RECYCLE_AFTER, in_flight=2, workers=2)
    assert not should_recycle(RECYCLE_AFTER, in_flight=1, workers=2)  # no backlog
    assert not should_recycle(RECYCLE_AFTER - 1, in_flight=5, workers=2)  # a young connection
    assert not should_recycle(10 * RECYCLE_AFTER, in_flight=5, workers=1)  # nowhere to go
