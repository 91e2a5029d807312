"""The stages of a pipeline run, each reading the previous stage's artifact under ``--out``:
``data`` -> ``ctr`` -> report. ``run_all`` runs them in order."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mimrec.config import PipelineConfig
from mimrec.ctr.stage import run_ctr
from mimrec.data.samples import BUCKETS
from mimrec.data.stage import read_data, run_data
from mimrec.eval.report import build_report


def stage_data(cfg: PipelineConfig, out: Path, console: Console) -> None:
    """Build the P1 samples into ``out/data``."""
    console.print(f"[bold]data[/]: {cfg.data.dataset} -> {out / 'data'}")
    art = run_data(cfg.data, out / "data")
    n = len(art.samples.split)
    console.print(f"  {n:,} samples, {len(art.items):,} items, {len(art.samples.user_ids):,} users")


def stage_train(cfg: PipelineConfig, out: Path, console: Console) -> None:
    """Train the CTR variants on ``out/data`` into ``out/ctr``."""
    console.print(f"[bold]train[/]: {', '.join(cfg.ctr.variants)} x seeds "
                  f"{list(cfg.ctr.train.seeds)} -> {out / 'ctr'}")
    run_ctr(cfg.ctr, cfg.data, read_data(out / "data"), out / "ctr", console)


def stage_eval(cfg: PipelineConfig, out: Path, console: Console) -> dict:
    """Write the report of ``out/ctr`` into ``out`` and print its table."""
    report = build_report(cfg.eval, out / "ctr", out)
    console.print(summary_table(report))
    console.print(f"report: {out / 'report.md'} (also report.json, report_buckets.png)")
    return report


def run_all(cfg: PipelineConfig, out: Path, console: Console) -> dict:
    """Every stage in order."""
    stage_data(cfg, out, console)
    stage_train(cfg, out, console)
    return stage_eval(cfg, out, console)


def summary_table(report: dict) -> Table:
    """The report's CTR table for the terminal."""
    table = Table(title=f"{report['protocol']} test metrics (mean over seeds)")
    for col in ("model", "AUC", "gAUC", "LogLoss", "RelaImpr", *[f"AUC {b}" for b in BUCKETS]):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in report["models"].items():
        table.add_row(name, f"{m['auc']:.4f}", f"{m['gauc']:.4f}", f"{m['logloss']:.4f}",
                      f"{m['rela_impr']:+.2f}%",
                      *[f"{m['buckets'][b]['auc']:.4f}" for b in BUCKETS])
    return table
