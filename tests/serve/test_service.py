"""The real service in a subprocess, over HTTP: round trips, every bad input, restart, bursts."""

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mimrec.processes import child_pids
from tests.serve.conftest import TOKEN, Server

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _ids(server, n, start=0):
    return [it["item_id"] for it in server.client.get("/v1/items?limit=2000").json()][start:start + n]


def _problem(response, status, field):
    assert response.status_code == status, response.text
    body = response.json()
    fields = [d["field"] for d in body["detail"]]
    assert any(field in f for f in fields), body
    return " ".join(d["problem"] for d in body["detail"])


def test_score_round_trip_and_service_pages(server):
    c = server.client
    health = c.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "ciubm-seed0"
    history, cands = _ids(server, 5), _ids(server, 7, start=20)
    r = c.post("/v1/score", json={"history": history, "candidates": cands, "user_id": "1"})
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    assert len(scores) == 7 and all(0 < s < 1 for s in scores)
    as_ints = c.post("/v1/score", json={"history": [int(h) for h in history],
                                        "candidates": [int(x) for x in cands], "user_id": 1})
    assert as_ints.json()["scores"] == pytest.approx(scores, rel=1e-6)
    assert "/v1/score" in c.get("/openapi.json").json()["paths"]
    assert "mimrec scoring service" in c.get("/").text
    history_page = c.get("/v1/users/1/history?limit=5", headers=AUTH).json()
    assert len(history_page["history"]) <= 5 and history_page["history"][0]["title"]
    metrics = c.get("/metrics", headers=AUTH).text
    line = next(x for x in metrics.splitlines()
                if x.startswith('mimrec_requests_total{method="POST",route="/v1/score",status="200"}'))
    assert float(line.split()[-1]) >= 2
    assert "mimrec_request_seconds_bucket" in metrics


def test_added_item_is_scorable_and_its_score_follows_its_content(server):
    c = server.client
    history = _ids(server, 10)
    r = c.post("/v1/items", json={"item_id": "fresh", "title": "toy story comedy", "year": "1995",
                                  "genres": ["Comedy"]}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["added_while_serving"] and not r.json()["in_training_catalogue"]
    first = c.post("/v1/score", json={"history": history, "candidates": ["fresh"]}).json()
    c.post("/v1/items", json={"item_id": "fresh", "title": "war horror thriller", "year": "1950",
                              "attributes": ["genre:War"]}, headers=AUTH)
    second = c.post("/v1/score", json={"history": history, "candidates": ["fresh"]}).json()
    assert second["store_version"] == first["store_version"] + 1
    assert first["scores"][0] != pytest.approx(second["scores"][0], abs=1e-7)
    item = c.get("/v1/items/fresh").json()
    assert item["title"] == "war horror thriller" and item["fields"]["attributes"] == ["genre:War"]
    assert c.get("/v1/items").json()[0]["item_id"] == "fresh"


def test_bad_inputs_get_4xx_naming_the_field(server):
    c = server.client
    cands = _ids(server, 3)
    post = c.post
    assert "malformed JSON" in _problem(
        post("/v1/score", content=b'{"candidates": [1,', headers={"Content-Type": "application/json"}),
        400, "body")
    _problem(post("/v1/score", json={"candidates": "1"}), 422, "candidates")
    _problem(post("/v1/score", json={"candidates": [1.5]}), 422, "candidates")
    _problem(post("/v1/score", json={"history": cands}), 422, "candidates")
    _problem(post("/v1/score", json={"candidates": []}), 422, "candidates")
    _problem(post("/v1/score", json={"candidates": cands * 400}), 422, "candidates")
    _problem(post("/v1/score", json={"candidates": cands, "history": cands * 400}), 422, "history")
    unknown = _problem(post("/v1/score", json={"candidates": [cands[0], "nope-1", "nope-2"]}),
                       422, "candidates")
    assert "'nope-1'" in unknown and "'nope-2'" in unknown
    _problem(post("/v1/score", json={"candidates": cands, "history": ["nope"]}), 422, "history")
    _problem(post("/v1/score", json={"candidates": cands, "user_id": "nobody"}), 422, "user_id")
    _problem(post("/v1/score", json={"candidates": cands, "shoe_size": 3}), 422, "shoe_size")
    _problem(post("/v1/score", content=b"[1, 2]", headers={"Content-Type": "application/json"}),
             422, "body")
    big = b'{"candidates": ["' + b"x" * (9 * 1024 * 1024) + b'"]}'
    _problem(post("/v1/score", content=big, headers={"Content-Type": "application/json"}), 413, "body")
    # item writes
    item = {"item_id": "n1", "title": "a film"}
    _problem(post("/v1/items", json=item), 401, "Authorization")
    _problem(post("/v1/items", json=item, headers={"Authorization": "Bearer wrong"}), 401,
             "Authorization")
    _problem(post("/v1/items", json={**item, "image": "not base64!"}, headers=AUTH), 422, "image")
    broken = base64.b64encode(b"\x89PNG not really").decode()
    _problem(post("/v1/items", json={**item, "image": broken}, headers=AUTH), 422, "image")
    _problem(post("/v1/items", json={**item, "colour": "red"}, headers=AUTH), 422, "colour")
    _problem(post("/v1/items", json={**item, "title": {"x": 1}}, headers=AUTH), 422, "title")
    _problem(post("/v1/items", json={"title": "no id"}, headers=AUTH), 422, "item_id")
    _problem(post("/v1/items", json={"item_id": "empty"}, headers=AUTH), 422, "item")
    _problem(c.get("/v1/items/never-heard-of-it"), 404, "item_id")
    # the service is still up and unchanged
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.get("/v1/items/n1").status_code == 404


def test_a_photo_on_a_text_only_encoder_is_kept_and_the_vector_comes_from_the_text(server):
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (4, 4), (200, 30, 30)).save(png, format="PNG")
    photo = base64.b64encode(png.getvalue()).decode()
    c = server.client
    r = c.post("/v1/items", json={"item_id": "img", "title": "Red Square", "image": photo},
               headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["has_image"] and body["fields"]["embedded_from"] == ["title"]
    assert len(body["notes"]) == 1 and "not embedded" in body["notes"][0]
    assert c.get("/v1/items/img/image").content == png.getvalue()  # shown as uploaded
    # the same title without a photo gets the same vector: the photo did not enter it
    assert c.post("/v1/items", json={"item_id": "img2", "title": "Red Square"},
                  headers=AUTH).json()["notes"] == []
    scores = c.post("/v1/score", json={"history": ["img"], "candidates": ["img", "img2"]}).json()
    assert scores["scores"][0] == pytest.approx(scores["scores"][1], abs=1e-6)
    # a photo alone cannot stand in for the text on such a run
    r = c.post("/v1/items", json={"item_id": "only-photo", "image": photo}, headers=AUTH)
    assert "cannot stand in" in _problem(r, 422, "item")


def test_writes_are_refused_without_a_configured_token(run_copy):
    s = Server(run_copy, token=None)
    try:
        r = s.client.post("/v1/items", json={"item_id": "n", "title": "t"}, headers=AUTH)
        assert "MIMREC_API_TOKEN" in _problem(r, 403, "Authorization")
    finally:
        s.stop()


def test_restart_keeps_added_items(run_copy):
    s = Server(run_copy)
    history = _ids(s, 10)
    try:
        assert s.client.post("/v1/items", json={"item_id": 99001, "title": "kept film"},
                             headers=AUTH).status_code == 201
        before = s.client.post("/v1/score", json={"history": history, "candidates": [99001]}).json()
    finally:
        s.stop()
    s = Server(run_copy)
    try:
        after = s.client.post("/v1/score", json={"history": history, "candidates": ["99001"]}).json()
        assert after["scores"] == pytest.approx(before["scores"], rel=1e-5)
        assert s.client.get("/v1/items/99001").json()["title"] == "kept film"
    finally:
        s.stop()


def test_a_concurrent_burst_gives_no_error(server):
    ids = _ids(server, 150)
    body = {"history": ids[:50], "candidates": ids[50:150]}

    def one(i):
        if i % 10 == 0:
            return server.client.post("/v1/items", json={"item_id": f"burst-{i}", "title": f"film {i}"},
                                      headers=AUTH).status_code
        return server.client.post("/v1/score", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(120)))
    assert codes.count(200) == 108 and codes.count(201) == 12


def test_two_workers_both_score_an_item_added_through_either(run_copy):
    s = Server(run_copy, TOKEN, "--workers", "2")
    try:
        # one item writer for the service, started by the supervisor (not one per worker)
        commands = {pid: open(f"/proc/{pid}/cmdline", "rb").read()
                    for pid in child_pids(s.proc.pid)}
        writers = [p for p, c in commands.items() if b"mimrec.serve.writer_process" in c]
        assert len(writers) == 1
        assert all(child_pids(p) == [] for p, c in commands.items() if b"spawn_main" in c)
        history = _ids(s, 5)
        for k in range(3):
            assert s.client.post("/v1/items", json={"item_id": f"w{k}", "title": f"film {k}"},
                                 headers=AUTH).status_code == 201
        import httpx

        for _ in range(20):  # fresh connections land on either worker
            with httpx.Client(base_url=s.url, timeout=30) as c:
                r = c.post("/v1/score", json={"history": history, "candidates": ["w0", "w1", "w2"]})
                assert r.status_code == 200, r.text
                near = c.get("/v1/items/w1/similar?k=3")
                assert near.status_code == 200 and len(near.json()["similar"]) == 3
        for _ in range(4):  # /metrics sums over the workers, whichever one answers
            with httpx.Client(base_url=s.url, timeout=30, headers=AUTH) as c:
                line = next(x for x in c.get("/metrics").text.splitlines() if x.startswith(
                    'mimrec_requests_total{method="POST",route="/v1/score",status="200"}'))
                assert float(line.split()[-1]) == 20.0

        def keep_alive(k: int) -> list[int]:  # a busy worker may hand the connection over
            with httpx.Client(base_url=s.url, timeout=30) as c:
                return [c.post("/v1/score", json={"history": history, "candidates": ["w0"]}
                               ).status_code for _ in range(40)]

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:
            codes = [c for run in pool.map(keep_alive, range(6)) for c in run]
        assert codes == [200] * 240
    finally:
        s.stop()


def test_a_port_in_use_is_a_one_line_error(trained_run):
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "mimrec", "serve", str(trained_run), "--port",
                            str(port)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == f"mimrec: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_the_real_server_refuses_foreign_hosts_huge_heads_and_bad_ids(server):
    """Over real HTTP (uvicorn + httptools): DNS-rebinding hosts, a request head that httptools
    would otherwise buffer whole (10 MB was accepted), and the ids of issue 17."""
    import socket

    c = server.client
    assert "not served here" in _problem(c.get("/healthz", headers={"Host": "rebind.example"}),
                                         400, "Host")
    assert c.get("/healthz", headers={"Host": f"localhost:{server.port}"}).status_code == 200
    _problem(c.get("/v1/users/1/history"), 401, "Authorization")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: "
                      + b"a" * 10_000_000 + b"\r\n\r\n")
        except OSError:
            pass  # the server may close before the client has sent it all
        head = s.recv(200)
    assert head.startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = s.recv(500)
    assert answer.startswith(b"HTTP/1.1 400") and b'"field": "request"' in answer
    version = c.get("/healthz").json()["store_version"]
    for bad in ("1\x00x", "x" * (1 << 20), "", "a\nb"):
        _problem(c.post("/v1/items", json={"item_id": bad, "title": "x"}, headers=AUTH), 422,
                 "item_id")
    assert c.get("/healthz").json()["store_version"] == version
    ok = c.post("/v1/items", json={"item_id": "after-bad-ids", "title": "x"}, headers=AUTH)
    assert ok.status_code == 201, ok.text


def _service_folders(pid: int) -> list[Path]:
    """The private folders a multi-worker service of process ``pid`` made."""
    import tempfile

    return list(Path(tempfile.gettempdir()).glob(f"mimrec-serve-*.tmp-{pid}"))


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its child processes (uvicorn's workers)."""
    return [pid, *child_pids(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_while_adding_loses_no_acknowledged_item(run_copy, workers):
    """Items are added from 4 threads while the server (every worker process) is killed with
    SIGKILL, twice: every item that got a 201 is served after the restart, and the store holds
    no duplicate id."""
    import os
    import signal
    import threading
    import time

    import httpx

    from mimrec.store.center import RepresentationCenter

    acknowledged: list[str] = []
    killed: list[int] = []  # the killed supervisors
    for round_ in range(2):
        s = Server(run_copy, TOKEN, "--workers", str(workers))
        # a killed service's private folder (socket, metrics) is removed by the next start
        assert [f for pid in killed for f in _service_folders(pid)] == []
        stop = threading.Event()

        def add(worker: int, url: str = s.url, stop: threading.Event = stop,
                round_: int = round_) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                k = 0
                while not stop.is_set():
                    key = f"kill{round_}-{worker}-{k}"
                    try:
                        r = c.post("/v1/items", json={"item_id": key, "title": f"film {k}"},
                                   headers=AUTH)
                    except httpx.TransportError:
                        return  # the server is gone: this one was never acknowledged
                    if r.status_code == 201:
                        acknowledged.append(key)
                    k += 1

        threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while (sum(k.startswith(f"kill{round_}-") for k in acknowledged) < 3
               and time.monotonic() < deadline):
            time.sleep(0.05)
        time.sleep(0.1 * round_)  # kill at another point of the write
        for pid in _process_tree(s.proc.pid):
            os.kill(pid, signal.SIGKILL)
        s.proc.wait()
        killed.append(s.proc.pid)
        assert len(_service_folders(s.proc.pid)) == (workers > 1)  # left by the kill
        stop.set()
        for t in threads:
            t.join()
        s.client.close()
    assert len(acknowledged) >= 6
    s = Server(run_copy)
    try:
        missing = [k for k in acknowledged if s.client.get(f"/v1/items/{k}").status_code != 200]
        assert missing == []
    finally:
        s.stop()
    center = RepresentationCenter(run_copy / "index" / "csft")
    assert len(set(center.ids)) == len(center.ids)
    import shutil

    for folder in _service_folders(killed[-1]):  # the last kill's (no 2-worker start after it)
        shutil.rmtree(folder)
    print(f"kill -9 runs: 2 ({workers} worker(s)), acknowledged items: {len(acknowledged)}, "
          f"lost: {len(missing)}")
