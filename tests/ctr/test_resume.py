"""A stopped CTR stage goes on from its checkpoints and ends with the models of an uninterrupted
run; a killed ``mimrec train`` leaves no process running and no temporary folder behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mimrec.ctr import train
from mimrec.ctr.checkpoint import checkpoint_folder
from mimrec.ctr.config import CtrConfig, ModelConfig, TrainConfig
from mimrec.ctr.stage import run_ctr
from mimrec.processes import child_pids, pid_alive


def _cfg(lr: float = 1e-3, variants: tuple = ("din", "ciubm"), sparse: bool = False) -> CtrConfig:
    # DIN, then CiUBM started from it (epoch 0 = DIN's weights), with the weight average: every
    # piece of state a resume has to bring back
    return CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier")),
                     variants=variants,
                     train=TrainConfig(max_epochs=3, patience=5, ema_decay=0.9, lr=lr,
                                       seeds=(0,), threads=1, sparse_updates=sparse))


def _same_models(a: Path, b: Path, records_a: dict, records_b: dict) -> None:
    assert list(records_a) == list(records_b)
    for key in records_a:
        assert (a / f"{key}.safetensors").read_bytes() == (b / f"{key}.safetensors").read_bytes()
        strip = [{k: v for k, v in e.items() if k != "seconds"} for e in records_a[key]["epochs"]]
        assert strip == [{k: v for k, v in e.items() if k != "seconds"}
                         for e in records_b[key]["epochs"]]
        assert records_a[key]["test"] == records_b[key]["test"]
    with np.load(a / "predictions.npz") as pa, np.load(b / "predictions.npz") as pb:
        assert pa.files == pb.files
        for name in pa.files:
            np.testing.assert_array_equal(pa[name], pb[name])


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse-updates"])
def test_a_stopped_stage_resumes_to_exactly_the_uninterrupted_models(artifacts, tmp_path,
                                                                    monkeypatch, sparse):
    data_cfg, data, index = artifacts
    whole = run_ctr(_cfg(sparse=sparse), data_cfg, data, tmp_path / "whole", index_dir=index)
    assert not (tmp_path / "checkpoints").exists()  # removed once the artifact is written

    real_epoch, calls = train.train_epoch, []

    def stopped_in_epoch_5(*args, **kwargs):  # DIN's 3 epochs, then CiUBM's 1st and 2nd
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # as a kill in the middle of CiUBM's epoch 2
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", stopped_in_epoch_5)
    out = tmp_path / "ctr"
    with pytest.raises(KeyboardInterrupt):
        run_ctr(_cfg(sparse=sparse), data_cfg, data, out, index_dir=index)
    folder = checkpoint_folder(out)
    assert folder == tmp_path / "checkpoints" / "ctr"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ciubm-seed0.epoch.pt", "din-seed0.json", "din-seed0.npz", "din-seed0.safetensors"]
    assert not out.exists() and not list(tmp_path.glob(".ctr.*"))

    monkeypatch.setattr(train, "train_epoch", real_epoch)
    calls.clear()
    terminal = io.StringIO()
    resumed = run_ctr(_cfg(sparse=sparse), data_cfg, data, out, Console(file=terminal, width=160),
                      index_dir=index)
    text = terminal.getvalue()
    assert "din-seed0: finished before the run was stopped" in text
    assert "ciubm-seed0 epoch 1/3" in text and "(from checkpoint)" in text
    assert text.count("(from checkpoint)") == 2  # CiUBM's epochs 0 (DIN's weights) and 1
    _same_models(tmp_path / "whole", out, whole, resumed)
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoints_of_other_settings_are_not_resumed(artifacts, tmp_path, monkeypatch):
    data_cfg, data, index = artifacts
    real_epoch = train.train_epoch

    def stopped(*args, **kwargs):
        if args[5] == 2:  # the epoch number
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", stopped)
    out = tmp_path / "ctr"
    with pytest.raises(KeyboardInterrupt):
        run_ctr(_cfg(variants=("din",)), data_cfg, data, out, index_dir=index)
    assert (checkpoint_folder(out) / "din-seed0.epoch.pt").is_file()
    monkeypatch.setattr(train, "train_epoch", real_epoch)
    terminal = io.StringIO()
    other = run_ctr(_cfg(2e-3, ("din",)), data_cfg, data, out,
                    Console(file=terminal, width=160), index_dir=index)
    assert "(from checkpoint)" not in terminal.getvalue()
    fresh = run_ctr(_cfg(2e-3, ("din",)), data_cfg, data, tmp_path / "fresh", index_dir=index)
    _same_models(out, tmp_path / "fresh", other, fresh)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and pid_alive(pid)


@pytest.mark.slow  # three CLI runs in subprocesses: about 90 s on a loaded 2-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_mimrec_train_leaves_nothing_running_and_the_rerun_resumes(ml_slice,
                                                                             tmp_path):
    run, tmp_dir = tmp_path / "run", tmp_path / "tmpdir"
    tmp_dir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_dir)}
    common = ["--set", "data.dataset=files", "--set", f"data.path={ml_slice}",
              "--set", "ctr.variants=['din']", "--set", "ctr.train.seeds=[0, 1]",
              "--set", "ctr.train.workers=2", "--set", "ctr.train.threads=1",
              "--set", "ctr.train.max_epochs=4", "--set", "ctr.model.mlp_units=[16]"]

    def mimrec(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mimrec", *args], capture_output=True,
                              text=True, env=env, timeout=600)

    r = mimrec("data", "configs/movielens.toml", "--out", str(run), *common)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "mimrec", "train", "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    folder = checkpoint_folder(run / "ctr")
    deadline = time.monotonic() + 300
    while not list(folder.glob("*.epoch.pt")) and time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    workers = child_pids(proc.pid)
    assert len(workers) >= 2  # the two training workers (and multiprocessing's helper)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _running(p)]
    assert list(run.glob(".ctr.tmp-*"))  # the killed stage's folder, until the next run

    r = mimrec("train", "--out", str(run))
    assert r.returncode == 0, r.stderr
    assert "(from checkpoint)" in r.stderr + r.stdout
    assert not list(run.glob(".ctr.*")) and not (run / "checkpoints").exists()
    # nothing left in the temporary folder either (torch's compile cache aside)
    assert not [p for p in tmp_dir.iterdir() if not p.name.startswith("torchinductor_")]
    resumed = json.loads((run / "ctr" / "manifest.json").read_text())["metrics"]
    (run / "resumed").mkdir()
    for path in (run / "ctr").glob("*-seed*.safetensors"):
        path.rename(run / "resumed" / path.name)
    (run / "ctr" / "predictions.npz").rename(run / "resumed" / "predictions.npz")

    r = mimrec("train", "--out", str(run))  # uninterrupted, from scratch
    assert r.returncode == 0, r.stderr
    assert "(from checkpoint)" not in r.stderr + r.stdout
    whole = json.loads((run / "ctr" / "manifest.json").read_text())["metrics"]
    _same_models(run / "resumed", run / "ctr", resumed, whole)
