"""Data-parallel CTR training under torchrun: 2 ranks on the CPU train the model one process
trains with the same global batch, on uneven shards too, and resume from checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mimrec.ctr.data_parallel import DataParallel
from mimrec.data.stage import read_data
from mimrec.processes import child_pids

from .test_resume import _running

QUICK = ["--set", "data.dataset=files", "--set", "ctr.variants=['din']",
         "--set", "ctr.train.seeds=[0]", "--set", "ctr.train.workers=1",
         "--set", "ctr.train.threads=1", "--set", "ctr.train.max_epochs=3",
         "--set", "ctr.train.patience=5", "--set", "ctr.train.batch_size=256",
         "--set", "ctr.model.mlp_units=[16]"]


def _run(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node=2"] if torchrun else [sys.executable])
    return subprocess.run([*launcher, "-m", "mimrec", *args], capture_output=True, text=True,
                          timeout=600)


def _valid_aucs(run: Path) -> list[float]:
    metrics = json.loads((run / "ctr" / "manifest.json").read_text())["metrics"]
    return [e["valid_auc"] for e in metrics["din-seed0"]["epochs"]]


def test_a_rank_takes_its_rows_of_every_global_batch():
    """Two ranks over 7 rows (shards of 4 and 3): the same number of steps, every row of a
    global batch on exactly one rank, and weights that make DDP's mean the batch's mean."""
    ranks = [DataParallel(module=None, rank=r, world=2, rows=7) for r in (0, 1)]
    order = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    for start in range(0, 7, 3):
        batch = order[start:start + 3]
        seen = []
        for par in ranks:
            local, weight, scale = par.local_batch(batch)
            assert len(local) >= 2 and scale == 2 / len(batch)
            seen += [int(i) * 2 + par.rank for i, w in zip(local, weight, strict=True) if w]
        assert sorted(seen) == sorted(batch.tolist())


@pytest.mark.slow  # four CLI runs (two under torchrun): about 2 min on a loaded 2-core machine
def test_two_ranks_train_what_one_process_trains_and_resume(ml100k, tmp_path):
    from tests.conftest import write_slice

    data = write_slice(ml100k, tmp_path / "slice", n_users=101)
    run = tmp_path / "run"
    exact = ["--set", "ctr.model.dropout=0", "--set", "ctr.model.batch_norm=false"]
    r = _run("data", "configs/movielens.toml", "--out", str(run), "--set", f"data.path={data}",
             *QUICK, *exact)
    assert r.returncode == 0, r.stderr
    samples = read_data(run / "data").samples
    assert (samples.split == 0).sum() % 2 == 1  # uneven shards: one rank has a row more

    r = _run("train", "--out", str(run))
    assert r.returncode == 0, r.stderr
    one = _valid_aucs(run)
    r = _run("train", "--out", str(run), torchrun=True)
    assert r.returncode == 0, r.stderr
    assert "data-parallel: 2 ranks" in r.stdout + r.stderr
    two = _valid_aucs(run)
    # no dropout, no batch norm: the same steps up to the order of float sums
    assert two == pytest.approx(one, abs=2e-3)
    assert not (run / "checkpoints").exists()

    # kill -9 of torchrun after a checkpoint: its ranks end too; the rerun resumes to the same
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 "--nproc_per_node=2", "-m", "mimrec", "train", "--out",
                                 str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = run / "checkpoints" / "ctr"
    deadline = time.monotonic() + 300
    while not list(folder.glob("*.epoch.pt")) and time.monotonic() < deadline:
        assert launcher.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    ranks = child_pids(launcher.pid)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 20
    while any(_running(p) for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ranks and not [p for p in ranks if _running(p)]
    r = _run("train", "--out", str(run), torchrun=True)
    assert r.returncode == 0, r.stderr
    assert "(from checkpoint)" in r.stdout + r.stderr
    assert _valid_aucs(run) == two


@pytest.mark.slow  # two CLI runs, one under torchrun: about a minute
def test_two_ranks_with_sparse_updates_train_what_one_process_trains(ml100k, tmp_path):
    """DDP averages the ranks' sparse embedding gradients (gloo); the L2 on the used rows and
    the lazy weight average then act on the union of the ranks' rows, as in one process."""
    from tests.conftest import write_slice

    data = write_slice(ml100k, tmp_path / "slice", n_users=101)
    run = tmp_path / "run"
    r = _run("data", "configs/movielens.toml", "--out", str(run), "--set", f"data.path={data}",
             *QUICK, "--set", "ctr.model.dropout=0", "--set", "ctr.model.batch_norm=false",
             "--set", "ctr.train.sparse_updates=true")
    assert r.returncode == 0, r.stderr
    r = _run("train", "--out", str(run))
    assert r.returncode == 0, r.stderr
    one = _valid_aucs(run)
    r = _run("train", "--out", str(run), torchrun=True)
    assert r.returncode == 0, r.stderr
    assert _valid_aucs(run) == pytest.approx(one, abs=2e-3)
