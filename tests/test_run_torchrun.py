"""`mimrec run` under torchrun: data and pretrain on rank 0 while the other rank waits, C-SFT and
the index shared, CTR training data-parallel; the run folder is the one process's, and a rank-0
failure ends every rank with a message instead of a wait."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mimrec.artifacts import read_manifest
from tests.encoders.tiny_towers import save_tiny_text_model
from tests.test_cli import QUICK

ONE_SEED = [*QUICK, "--set", "ctr.train.seeds=[0]", "--set", "ctr.train.workers=1",
            "--set", "ctr.train.threads=1", "--set", "eval.bootstrap_resamples=20"]


def _run(*args, torchrun: bool) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node=2"] if torchrun else [sys.executable])
    return subprocess.run([*launcher, "-m", "mimrec", *map(str, args)], capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow  # two whole pipeline runs, one under torchrun: about 2-3 min on 2 busy cores
def test_run_under_torchrun_writes_the_one_process_run_folder(ml_slice, tmp_path):
    text = save_tiny_text_model(tmp_path / "bert")
    common = ["configs/movielens.toml", "--set", "data.dataset=files", "--set",
              f"data.path={ml_slice}", "--set", f"encoder.text_model={text}", *ONE_SEED]
    one, two = tmp_path / "one", tmp_path / "two"
    r = _run("run", *common, "--out", one, torchrun=False)
    assert r.returncode == 0, r.stderr
    r = _run("run", *common, "--out", two, torchrun=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("report:") == 1  # rank 0 reports; rank 1 prints nothing of its own
    for stage in ("data", "pretrain", "csft", "index", "ctr"):
        assert read_manifest(two / stage)["stage"] == stage
    # the stages rank 0 runs alone are the one process's, to the byte
    assert read_manifest(two / "data")["hash"] == read_manifest(one / "data")["hash"]
    assert read_manifest(two / "pretrain")["hash"] == read_manifest(one / "pretrain")["hash"]
    report = json.loads((two / "report.json").read_text())
    assert set(report["models"]) == {"din", "ciubm", "ciubm_shuffled"}  # + its control
    assert 0.5 < report["models"]["din"]["auc"] < 1
    assert (two / "config.toml").read_text() == (one / "config.toml").read_text()
    assert (two / "serve" / "bundle.json").is_file()
    assert not list(two.glob(".*tmp-*")) and not list(two.glob("*/.*tmp-*"))


def test_a_failed_rank0_stage_ends_every_rank(tmp_path):
    """The data stage fails on rank 0 (no such folder): rank 1, waiting, ends too."""
    r = _run("run", "configs/movielens.toml", "--set", "data.dataset=files", "--set",
             f"data.path={tmp_path / 'missing'}", "--out", tmp_path / "run", torchrun=True)
    assert r.returncode != 0
    assert "rank 0 failed in the data stage" in r.stderr
    assert str(tmp_path / "missing") in r.stderr


def test_a_rank_ends_when_its_torchrun_is_killed(tmp_path):
    """``kill -9`` of torchrun (which cannot pass SIGKILL on; its ranks sit in their own process
    groups) ends every rank that joined a process group through mimrec: before, a rank of a
    killed ``mimrec index`` went on encoding and removed the shards its rerun was reusing."""
    import os
    import signal
    import time

    script = tmp_path / "rank.py"
    script.write_text(
        "import os, time\n"
        "from mimrec.csft.distributed import process_group_from_env\n"
        "with process_group_from_env():\n"
        f"    open(os.path.join({str(tmp_path)!r}, f'pid-{{os.getpid()}}'), 'w').close()\n"
        "    time.sleep(120)\n")
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 "--nproc_per_node=2", str(script)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        ranks = [int(p.name.removeprefix("pid-")) for p in tmp_path.glob("pid-*")]
        assert len(ranks) == 2, "the ranks did not start"
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in ranks), "a rank outlived its killed torchrun"
    finally:
        for p in tmp_path.glob("pid-*"):
            pid = int(p.name.removeprefix("pid-"))
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
