"""The CTR stage trains the same models whether one after another or in worker processes."""

import io
import json

import numpy as np
import pytest
from rich.console import Console

from mimrec.ctr.config import CtrConfig, ModelConfig, TrainConfig
from mimrec.ctr.stage import run_ctr

from .test_watch import check_epoch_lines


@pytest.mark.parametrize("workers", [2])
def test_workers_give_the_same_models_as_one_process(artifacts, tmp_path, workers):
    data_cfg, data, index = artifacts
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier")),
                    variants=("din", "ciubm"),
                    train=TrainConfig(max_epochs=1, seeds=(0, 1), threads=1))
    one = run_ctr(cfg, data_cfg, data, tmp_path / "one", index_dir=index)
    many_cfg = CtrConfig(model=cfg.model, variants=cfg.variants,
                         train=TrainConfig(max_epochs=1, seeds=(0, 1), threads=1,
                                           workers=workers))
    terminal = io.StringIO()
    many = run_ctr(many_cfg, data_cfg, data, tmp_path / "many",
                   Console(file=terminal, width=120), index_dir=index)
    check_epoch_lines(terminal.getvalue(), many, 1)  # the workers' epochs reach the terminal
    assert list(one) == list(many) == ["din-seed0", "din-seed1", "ciubm-seed0", "ciubm-seed1"]
    with np.load(tmp_path / "one" / "predictions.npz") as a, \
            np.load(tmp_path / "many" / "predictions.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    for key in one:
        for metric in ("auc", "gauc", "logloss"):
            assert one[key]["test"][metric] == many[key]["test"][metric]
        assert many[key]["content"] == one[key]["content"]
        assert (tmp_path / "many" / f"{key}.safetensors").is_file()
    manifest = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert manifest["config"]["ctr"]["train"]["workers"] == workers
    assert one["din-seed0"]["content"] is None


def _quick(variants, seeds=(0,), **model):
    return CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier"),
                                       **model),
                     variants=variants, train=TrainConfig(max_epochs=1, seeds=seeds, threads=1))


def test_retraining_a_subset_keeps_the_other_models(artifacts, tmp_path):
    """`--set "ctr.variants=['din']"` used to delete every other trained model."""
    data_cfg, data, index = artifacts
    out = tmp_path / "ctr"
    run_ctr(_quick(("din", "ciubm")), data_cfg, data, out, index_dir=index)
    weights = (out / "ciubm-seed0.safetensors").read_bytes()
    with np.load(out / "predictions.npz") as p:
        ciubm_test = p["ciubm-seed0/test"]
    records = run_ctr(_quick(("din",), seeds=(0, 1)), data_cfg, data, out, index_dir=index)
    assert set(records) == {"ciubm-seed0", "din-seed0", "din-seed1"}
    assert (out / "ciubm-seed0.safetensors").read_bytes() == weights
    with np.load(out / "predictions.npz") as p:
        assert set(p.files) == {f"{k}/{s}" for k in records for s in ("valid", "test")}
        np.testing.assert_array_equal(p["ciubm-seed0/test"], ciubm_test)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "kept_from" in manifest["metrics"]["ciubm-seed0"]
    assert "kept_from" not in manifest["metrics"]["din-seed1"]
    from mimrec.errors import MimrecError

    with pytest.raises(MimrecError, match="ciubm-seed0.*another ctr.model.*--replace"):
        run_ctr(_quick(("din",), embedding_dim=8), data_cfg, data, out, index_dir=index)
    assert set(json.loads((out / "manifest.json").read_text())["metrics"]) == set(records)
    replaced = run_ctr(_quick(("din",), embedding_dim=8), data_cfg, data, out, index_dir=index,
                       replace=True)
    assert set(replaced) == {"din-seed0"} and not (out / "ciubm-seed0.safetensors").exists()


def test_stale_temp_folders_of_killed_runs_are_removed(artifacts, tmp_path):
    import os
    import subprocess
    import sys

    from mimrec.artifacts import stage_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".ctr.tmp-{dead}"
    (stale / "x").mkdir(parents=True)
    live = tmp_path / f".ctr.tmp-{os.getppid()}"  # a process that runs: not touched
    live.mkdir()
    with stage_dir(tmp_path / "ctr") as tmp:
        (tmp / "a").write_text("a")
    assert not stale.exists() and live.exists() and (tmp_path / "ctr" / "a").is_file()


def test_pool_workers_die_with_their_parent(tmp_path):
    """A killed training run left its worker processes training for minutes."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    from mimrec.processes import pid_alive

    script = textwrap.dedent("""
        import multiprocessing, os, signal, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from mimrec.processes import die_with_parent

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=die_with_parent,
                                       initargs=(os.getpid(),))
            pids = [pool.submit(os.getpid).result() for _ in range(4)]
            pool.submit(time.sleep, 600)
            print(" ".join(map(str, sorted(set(pids)))), flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers and all(pid_alive(p) for p in workers)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while any(pid_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in workers)


def test_a_diverged_model_never_replaces_the_trained_artifact(artifacts, tmp_path, monkeypatch):
    from mimrec.ctr import stage
    from mimrec.errors import MimrecError

    data_cfg, data, index = artifacts
    out = tmp_path / "ctr"
    run_ctr(_quick(("din",)), data_cfg, data, out, index_dir=index)
    before = (out / "manifest.json").read_text()
    monkeypatch.setattr(stage, "predict", lambda model, split: np.full(len(split), np.nan))
    with pytest.raises(MimrecError, match="din-seed1 predicts NaN.*left as it was"):
        run_ctr(_quick(("din",), seeds=(1,)), data_cfg, data, out, index_dir=index)
    assert (out / "manifest.json").read_text() == before
    assert not list(tmp_path.glob(".ctr.tmp-*"))


def test_a_split_with_one_class_is_refused_before_training(artifacts, tmp_path):
    """Valid AUC (early stopping) and the test report need clicks and non-clicks."""
    import dataclasses

    from mimrec.data.samples import VALID
    from mimrec.errors import DataError

    data_cfg, data, index = artifacts
    label = data.samples.label.copy()
    label[data.samples.split == VALID] = 1
    one_class = dataclasses.replace(data, samples=dataclasses.replace(data.samples, label=label))
    with pytest.raises(DataError, match="valid needs a click and a non-click"):
        run_ctr(_quick(("din",)), data_cfg, one_class, tmp_path / "ctr", index_dir=index)
    assert not (tmp_path / "ctr").exists()
