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
