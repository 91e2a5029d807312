"""Training you can watch: epoch lines reach the terminal as epochs end, also from worker
processes, and the history is kept in the model's record."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mimrec.ctr.config import CtrConfig, ModelConfig, TrainConfig
from mimrec.ctr.stage import run_ctr
from mimrec.ctr.watch import epoch_line
from mimrec.runlog import LoggedConsole


def check_epoch_lines(text: str, records: dict, max_epochs: int) -> None:
    """Every epoch of every model printed once, in order, matching its kept history, before
    the model's result line."""
    pattern = re.compile(rf"(\S+-seed\d) epoch (\d+)/{max_epochs}: train loss ([0-9.]+), "
                         r"valid AUC ([0-9.]+)")
    seen = [(m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in pattern.finditer(text)]
    for key, record in records.items():
        mine = [s for s in seen if s[0] == key]
        history = [e for e in record["epochs"] if e["epoch"] > 0]
        assert [s[1] for s in mine] == [e["epoch"] for e in history]
        for (_, _, loss, auc), e in zip(mine, history, strict=True):
            assert loss == pytest.approx(e["train_loss"], abs=1e-4)
            assert auc == pytest.approx(e["valid_auc"], abs=1e-4)
        assert text.index(f"{key} epoch {history[-1]['epoch']}/") < text.index(f"{key}: test AUC")


def test_every_epoch_is_printed_as_it_ends(artifacts, tmp_path):
    """(The same from worker processes: tests/ctr/test_stage.py, the workers test.)"""
    data_cfg, data, index = artifacts
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta",)),
                    variants=("din", "ciubm"),
                    train=TrainConfig(max_epochs=2, patience=5, seeds=(0,), threads=1))
    out = io.StringIO()
    log = tmp_path / "run" / "logs" / "run.log"
    console = LoggedConsole(log, file=out, width=120, color_system=None)
    records = run_ctr(cfg, data_cfg, data, tmp_path / "ctr", console, index_dir=index)
    text = out.getvalue()
    check_epoch_lines(text, records, 2)
    for key, record in records.items():
        history = record["epochs"]  # the history kept with the model's record
        if record["spec"]["init_from"]:  # ciubm starts from din: epoch 0 = its start
            assert history[0]["epoch"] == 0 and f"{key} epoch 0/2: starting weights" in text
            history = history[1:]
        assert [e["epoch"] for e in history] == [1, 2]
        assert all(b["seconds"] >= a["seconds"] for a, b in zip(history, history[1:], strict=False))
    logged = log.read_text()
    check_epoch_lines(logged, records, 2)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", logged)


def test_the_start_of_a_warm_started_model_is_named():
    line = epoch_line("ciubm-seed1", {"epoch": 0, "train_loss": None, "valid_auc": 0.7},
                      20)
    assert line.strip() == "ciubm-seed1 epoch 0/20: starting weights, valid AUC 0.7000"


def test_the_log_file_gets_plain_text_and_tables(tmp_path):
    from rich.table import Table

    log = tmp_path / "logs" / "run.log"
    console = LoggedConsole(log, file=io.StringIO(), width=80)
    console.print("[bold]train[/]: din")
    table = Table(title="t")
    table.add_column("model")
    table.add_row("din")
    console.print(table)
    text = log.read_text()
    assert "train: din" in text and "[bold]" not in text and "\x1b[" not in text
    assert "│ din" in text or "| din" in text
    assert isinstance(console, Console)


def test_tensorboard_gets_every_epoch_of_every_model(artifacts, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data_cfg, data, index = artifacts
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta",)),
                    variants=("din", "ciubm"),
                    train=TrainConfig(max_epochs=2, patience=5, seeds=(0,), threads=1,
                                      tensorboard=True))
    out = io.StringIO()
    records = run_ctr(cfg, data_cfg, data, tmp_path / "run" / "ctr",
                      Console(file=out, width=120), index_dir=index)
    board = tmp_path / "run" / "logs" / "tensorboard"
    assert f"tensorboard --logdir {board}" in out.getvalue()
    assert sorted(p.name for p in board.iterdir()) == sorted(records)
    for key, record in records.items():
        events = EventAccumulator(str(board / key))
        events.Reload()
        auc = [(e.step, e.value) for e in events.Scalars("valid/auc")]
        loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
        assert [s for s, _ in auc] == [e["epoch"] for e in record["epochs"]]  # epoch 0 included
        assert [v for _, v in auc] == pytest.approx([e["valid_auc"] for e in record["epochs"]])
        trained = [e for e in record["epochs"] if e["train_loss"] is not None]
        assert loss == [(e["epoch"], pytest.approx(e["train_loss"])) for e in trained]


def test_tensorboard_without_the_package_is_one_clear_error(monkeypatch, tmp_path):
    import builtins

    from mimrec.ctr.watch import TensorBoardEpochs
    from mimrec.errors import MimrecError

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(MimrecError, match=r"mimrec\[watch\]"):
        TensorBoardEpochs(tmp_path)
