"""A small trained bundle (real MovieLens slice, tiny random BERT, one epoch) and a helper that
runs the real service in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_slice
from tests.encoders.tiny_towers import save_tiny_text_model
from tests.test_cli import QUICK

TOKEN = "test-token"


@pytest.fixture(scope="session")
def trained_run(ml100k, tmp_path_factory) -> Path:
    """A finished `mimrec run` folder with DIN and CiUBM (read-only: copy before writing)."""
    root = tmp_path_factory.mktemp("serve-run")
    data = write_slice(ml100k, root / "slice", n_users=80)
    bert = save_tiny_text_model(root / "bert")
    out = root / "run"
    cmd = [sys.executable, "-m", "mimrec", "run", "configs/movielens.toml", "--out", str(out),
           "--set", "data.dataset=files", "--set", f"data.path={data}",
           "--set", f"encoder.text_model={bert}", *QUICK, "--set", "ctr.train.seeds=[0]",
           # CiUBM trained from scratch (its content parts still start at 0): started from the
           # one-epoch DIN it may keep the start, and then new items' content has no say
           "--set", "ctr.model.ciubm_from_din=false"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def image_run(tmp_path_factory) -> Path:
    """A finished P4 run: a catalogue of product photos (PNG bytes) with categorical features
    ``class`` and ``brand``, tiny random towers, one epoch (read-only: copy before writing)."""
    from tests.encoders.tiny_towers import save_tiny_image_weights
    from tests.pretrain.test_fashion import synthetic_fashion

    root = tmp_path_factory.mktemp("image-run")
    synthetic_fashion(root / "fm", 200, seed=0)
    out = root / "run"
    cmd = [sys.executable, "-m", "mimrec", "run", "configs/fashion_ctr.toml", "--out", str(out),
           "--set", f"data.path={root / 'fm'}", "--set", "data.p4.users=60",
           "--set", "data.p4.items_per_class=6",
           "--set", f"encoder.text_model={save_tiny_text_model(root / 'bert')}",
           "--set", f"encoder.image_model={save_tiny_image_weights(root / 'lite0.safetensors')}",
           "--set", "csft.batch_size=32", "--set", "ctr.train.workers=1",
           "--set", "eval.bootstrap_resamples=0", *QUICK, "--set", "ctr.train.seeds=[0]",
           "--set", "ctr.model.ciubm_from_din=false"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A writable copy of the trained run."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mimrec serve`` in a subprocess; ``client`` talks to it over real HTTP."""

    def __init__(self, run: Path, token: str | None = TOKEN, *extra: str,
                 model: str | None = "ciubm") -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "MIMREC_API_TOKEN"}
        if token is not None:
            env["MIMREC_API_TOKEN"] = token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mimrec", "serve", str(run), "--port", str(self.port),
             *(("--model", model) if model else ()), *(extra or ("--workers", "1"))],
            # by default the content model: it can take new items (None: the valid-best model,
            # which may be DIN)
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stdout.read()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("server did not come up within 120 s")

    def stop(self) -> str:
        self.client.close()
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory) -> Iterator[Server]:
    """One running service per test module, on its own copy of the run (tests share it: they
    use distinct item ids)."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("served") / "run"))
    s = Server(run)
    yield s
    s.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    """The fuzz run's example counts, always printed (CI logs show them)."""
    import sys

    fuzz = sys.modules.get("tests.serve.test_fuzz")
    for line in getattr(fuzz, "SUMMARY", []):
        terminalreporter.write_line(line)
