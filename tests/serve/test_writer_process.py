"""Item adds in a child process of the lowest CPU priority (mimrec.serve.writer_process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mimrec.processes import child_pids
from mimrec.serve.bundle import check_bundle, load_bundle
from mimrec.serve.item_writer import ItemWriter
from mimrec.serve.request_error import RequestError
from mimrec.serve.scorer import Scorer
from mimrec.serve.writer_process import SharedWriter, WriterClient, WriterProcess
from mimrec.store.center import RepresentationCenter

FIELDS = {"title": "Space Drama of the Far Moons", "year": "2026"}


def _gone(pid: int, within: float) -> bool:
    """Whether ``pid`` ended (a zombie not yet reaped counts as ended) within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def scorer(run_copy):
    """A scorer whose bundle holds no encoder (as ``mimrec serve`` loads it with writes on)."""
    s = Scorer(load_bundle(run_copy, "ciubm", encoder=False), writer_process=True)
    yield s
    s._writer.close()


def test_an_add_in_the_child_is_stored_as_the_served_encoder_embeds_it(scorer):
    pid = scorer._writer.pid
    assert pid is not None and pid != os.getpid()
    if sys.platform.startswith("linux"):
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    assert scorer.bundle.encoder is None and scorer.text_fields == ("title", "year", "genres")
    assert scorer.can_add_items and not scorer.has_images
    described = scorer.add_item("wp-1", dict(FIELDS), None, None)
    assert described["added_while_serving"] and described["title"] == FIELDS["title"]
    scores = scorer.score([scorer.catalogue.id_at(1)], ["wp-1", scorer.catalogue.id_at(2)])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    stored = RepresentationCenter(scorer.bundle.store).lookup(["wp-1"])
    expected, _ = ItemWriter(scorer.bundle.store, load_bundle(scorer.bundle.run, "ciubm").encoder
                             ).encode("wp-1", dict(FIELDS), None, None)  # as in-thread writes do
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)


def test_a_client_mistake_found_in_the_child_is_the_same_request_error(scorer):
    with pytest.raises(RequestError) as bad_id:
        scorer.add_item("bad\x00id", dict(FIELDS), None, None)
    assert bad_id.value.field == "item_id" and bad_id.value.status == 422
    with pytest.raises(RequestError) as bad_image:
        scorer.add_item("wp-2", dict(FIELDS), b"not an image", None)
    assert bad_image.value.field == "image"
    assert scorer.add_item("wp-2", dict(FIELDS), None, None)["item_id"] == "wp-2"


def test_a_child_that_died_is_replaced_by_the_next_add(scorer):
    first = scorer._writer.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while scorer._writer.pid is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # (every thread of the child has ended: it is reaped)
    assert scorer._writer.pid is None
    assert scorer.add_item("wp-3", dict(FIELDS), None, None)["item_id"] == "wp-3"
    assert scorer._writer.pid not in (None, first)


def test_the_child_ends_with_its_parent_even_on_kill_9(run_copy):
    key, _ = check_bundle(run_copy, "ciubm")
    code = ("import sys, time; from mimrec.serve.writer_process import WriterProcess; "
            f"w = WriterProcess({str(run_copy)!r}, {key!r}); "
            "print(f'child={w.pid}', flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("child="):  # (a library may print a blank line first)
            line = parent.stdout.readline()
            assert line, "the parent ended before it started the writer"
        child = int(line.strip().partition("=")[2])
        assert child in child_pids(parent.pid)
    finally:
        parent.kill()
        parent.wait()
    assert _gone(child, 10), "the writer process outlived its parent"


@pytest.fixture
def shared(run_copy, tmp_path):
    """The writer child a service with several workers shares (started as its supervisor
    does), and where it listens."""
    key, _ = check_bundle(run_copy, "ciubm")
    where = SharedWriter.new(tmp_path)
    owner = WriterProcess(run_copy, key, shared=where)
    yield owner, where
    owner.close()


def test_workers_share_one_writer_child_and_their_adds_are_all_stored(shared, run_copy):
    owner, where = shared
    clients = [WriterClient(where) for _ in range(2)]
    assert all(c.text_fields == ("title", "year", "genres") for c in clients)
    from concurrent.futures import ThreadPoolExecutor

    def add(k: int) -> str:
        return clients[k % 2].write(f"sh-{k}", dict(FIELDS), None, None).key

    with ThreadPoolExecutor(4) as pool:
        written = list(pool.map(add, range(8)))
    assert written == [f"sh-{k}" for k in range(8)]
    assert set(written) <= set(RepresentationCenter(run_copy / "index" / "csft").ids)
    assert child_pids(os.getpid()).count(owner.pid) == 1  # the one child writes for both
    with pytest.raises(RequestError) as bad:  # a client mistake, as from an own child
        clients[0].write("bad\x00id", dict(FIELDS), None, None)
    assert bad.value.field == "item_id" and bad.value.status == 422
    for c in clients:
        c.close()


def test_a_connection_without_the_key_is_refused(shared):
    from multiprocessing import AuthenticationError

    _, where = shared
    with pytest.raises(AuthenticationError):
        WriterClient(SharedWriter(where.path, b"wrong key"))
    assert WriterClient(where).write("sh-key", dict(FIELDS), None, None).key == "sh-key"


def test_a_shared_child_that_died_is_started_again_and_workers_reconnect(shared):
    owner, where = shared
    client = WriterClient(where)
    owner.keep_running()
    first = owner.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while owner.pid == first and time.monotonic() < deadline:
        time.sleep(0.1)  # (until the watcher reaped it: every thread of it ended)
    # the next add waits for the new child (the watcher is starting it)
    assert client.write("sh-again", dict(FIELDS), None, None).key == "sh-again"
    assert owner.pid not in (None, first)
