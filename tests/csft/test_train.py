"""Stage 2 end to end on tiny towers: the artifact, what trains, the entry point."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.artifacts import read_manifest
from mimrec.cli import main as cli_main
from mimrec.csft.config import CsftConfig
from mimrec.csft.train import fine_tune, load_csft_encoder, run_csft
from mimrec.data.config import DataConfig
from mimrec.data.stage import DataArtifact, read_data, run_data
from mimrec.encoders.config import EncoderConfig
from mimrec.errors import MimrecError
from mimrec.pretrain.config import PretrainConfig
from mimrec.pretrain.train import run_pretrain
from tests.encoders.tiny_towers import toy_items

FAST = CsftConfig(batch_size=8, epochs=2, queue_size=16, matryoshka_dims=(4, 8), lr=1e-2,
                  text_trainable_layers=1, progress=False)


def _interactions(n_users: int = 10, n_items: int = 24) -> pd.DataFrame:
    rows = [{"user_id": str(u), "item_id": str((u + 2 * k) % n_items + 1),
             "timestamp": 100 * k + u, "rating": 2 if k % 3 == 2 else 5}
            for u in range(n_users) for k in range(12)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def stage1(tiny_text_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data artifact, pretrain artifact) of a toy catalogue, built once."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("csft")
    tables = root / "tables"
    tables.mkdir()
    toy_items(24, with_images=False).drop(columns="image").to_parquet(tables / "items.parquet")
    _interactions().to_parquet(tables / "interactions.parquet")
    data = run_data(DataConfig(dataset="files", path=str(tables), user_features=()), root / "data")
    enc = EncoderConfig(dim=16, text_model=str(tiny_text_dir), attribute_min_count=1,
                        attribute_dim=8, progress=False)
    run_pretrain(PretrainConfig(adapt_epochs=0, align_epochs=2, align_batch_size=8), enc,
                 data.items, root / "pretrain", parents={"data": root / "data"})
    return root / "data", root / "pretrain"


def test_run_writes_an_artifact_that_reproduces_its_vectors(stage1, tmp_path: Path) -> None:
    data_dir, pretrain_dir = stage1
    data = read_data(data_dir)
    metrics = run_csft(FAST, pretrain_dir, data, tmp_path / "csft")
    manifest = read_manifest(tmp_path / "csft")
    assert manifest["stage"] == "csft" and set(manifest["parents"]) == {"pretrain", "data"}
    assert manifest["config"]["csft"]["batch_size"] == 8
    assert metrics["in_batch_candidates"] == 8 and metrics["queue_candidates"] == 16
    assert metrics["world_size"] == 1 and all(np.isfinite(metrics["loss"]))
    assert set(metrics["p2_valid"]) == {"raw", "pretrain", "csft"}
    assert set(metrics["p2_valid"]["csft"]) == {"recall@10", "recall@50", "mrr"}
    encoder = load_csft_encoder(tmp_path / "csft")
    vectors = encoder.encode_items(data.items)  # the whole towers, from the saved files
    again = run_csft(dataclasses.replace(FAST, eval_raw=False), pretrain_dir, data,
                     tmp_path / "again")
    assert again["p2_valid"]["csft"] == metrics["p2_valid"]["csft"]  # deterministic
    from mimrec.eval.retrieval import p2_metrics

    assert p2_metrics(vectors, data.samples) == pytest.approx(metrics["p2_valid"]["csft"])
    with pytest.raises(MimrecError, match="expected 'csft'"):
        load_csft_encoder(pretrain_dir)


def _rising_scores(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make every epoch score higher on valid than the last, so the last epoch is kept."""
    scores: list[float] = []

    def score(*_args) -> float:
        scores.append(float(len(scores)))
        return scores[-1]

    monkeypatch.setattr("mimrec.csft.train.valid_score", score)
    return scores


def _changed(data: DataArtifact, pretrain_dir: Path, cfg: CsftConfig) -> set[str]:
    from mimrec.pretrain.train import load_pretrained_encoder

    before = load_pretrained_encoder(pretrain_dir).state_dict()
    after = fine_tune(dataclasses.replace(cfg, eval_raw=False), pretrain_dir, data)[0].state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_only_the_configured_parts_train(stage1, monkeypatch: pytest.MonkeyPatch) -> None:
    _rising_scores(monkeypatch)
    data_dir, pretrain_dir = stage1
    data = read_data(data_dir)
    changed = _changed(data, pretrain_dir, FAST)
    assert any(k.startswith("text_tower.model.encoder.layer.1.") for k in changed)
    assert {"text_projection.weight", "attribute_projection.weight", "fusion.logits",
            "attribute_tower.bag.weight"} <= changed
    frozen = ("text_tower.model.embeddings.", "text_tower.model.encoder.layer.0.")
    assert not [k for k in changed if k.startswith(frozen)]
    heads_only = dataclasses.replace(FAST, text_trainable_layers=0, train_attributes=False,
                                     train_fusion=False)
    assert _changed(data, pretrain_dir, heads_only) == {
        "text_projection.weight", "text_projection.bias", "attribute_projection.weight",
        "attribute_projection.bias"}


def test_early_stopping_keeps_the_best_valid_epoch(stage1, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, pretrain_dir = stage1
    data = read_data(data_dir)
    cfg = dataclasses.replace(FAST, epochs=6, patience=2, eval_raw=False)
    # the real score: whatever epoch is kept, C-SFT never ends below the stage-1 vectors on valid
    _, metrics = fine_tune(cfg, pretrain_dir, data)
    by_epoch = metrics["valid_p2_recall@50_by_epoch"]
    assert metrics["best_epoch"] == int(np.argmax(by_epoch))
    assert metrics["p2_valid"]["csft"]["recall@50"] == pytest.approx(max(by_epoch))
    assert metrics["p2_valid"]["csft"]["recall@50"] >= metrics["p2_valid"]["pretrain"]["recall@50"]
    # a valid score that only falls: training stops after `patience` epochs, stage 1 is kept
    falling = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1] * 2)
    monkeypatch.setattr("mimrec.csft.train.valid_score", lambda *_args: next(falling))
    assert _changed(data, pretrain_dir, cfg) == set()  # reads 0.5, 0.4, 0.3
    falling = iter([0.5, 0.4, 0.3, 0.2])
    _, metrics = fine_tune(dataclasses.replace(cfg, patience=2), pretrain_dir, data)
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] == 0
    assert metrics["valid_p2_recall@50_by_epoch"] == [0.5, 0.4, 0.3]


def test_too_few_pairs_and_bad_matryoshka_dims_are_clear_errors(stage1, tmp_path: Path) -> None:
    data_dir, pretrain_dir = stage1
    data = read_data(data_dir)
    with pytest.raises(MimrecError, match="fewer than one step"):
        run_csft(dataclasses.replace(FAST, batch_size=10_000), pretrain_dir, data, tmp_path / "x")
    with pytest.raises(MimrecError, match="smaller than the encoder dimension 16"):
        run_csft(dataclasses.replace(FAST, matryoshka_dims=(8, 16)), pretrain_dir, data,
                 tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_mimrec_csft_command_runs_and_rejects_unknown_keys(stage1, capsys) -> None:
    data_dir, _ = stage1
    root = data_dir.parent  # the run folder: root/data, root/pretrain -> root/csft
    fast = ["--set", "csft.batch_size=8", "--set", "csft.epochs=1", "--set", "csft.progress=false",
            "--set", "csft.matryoshka_dims=[4]", "--set", "csft.eval_raw=false"]
    assert cli_main(["csft", "configs/movielens.toml", "--out", str(root), *fast]) == 0
    assert read_manifest(root / "csft")["stage"] == "csft"
    assert read_manifest(root / "csft")["metrics"]["world_size"] == 1
    assert cli_main(["csft", "configs/movielens.toml", "--out", str(root),
                     "--set", "csft.queue=3"]) == 2
    assert "unknown config key 'csft.queue'" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_workers(stage1, tmp_path: Path) -> None:
    data_dir, pretrain_dir = stage1
    run = tmp_path / "run"
    shutil.copytree(data_dir, run / "data")
    shutil.copytree(pretrain_dir, run / "pretrain")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29533", "-m", "mimrec", "csft", "configs/movielens.toml",
           "--out", str(run), "--set", "csft.batch_size=4", "--set", "csft.epochs=1",
           "--set", "csft.progress=false", "--set", "csft.matryoshka_dims=[4]",
           "--set", "csft.eval_raw=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = read_manifest(run / "csft")["metrics"]
    assert metrics["world_size"] == 2 and metrics["in_batch_candidates"] == 8
