"""The report's protocol names, its per-bucket intervals, the valid split and the oracle."""

import numpy as np
import pytest

from mimrec.eval.config import EvalConfig
from mimrec.eval.metrics import auc
from mimrec.eval.report import (
    bucket_difference_table,
    oracle_lines,
    protocol_name,
    resolution_lines,
    split_report,
)
from mimrec.eval.significance import bucket_bootstrap


def test_protocol_names_follow_the_data_config():
    assert protocol_name({"dataset": "movielens", "new_item_fraction": 0.0}) == "P1"
    assert protocol_name({"dataset": "movielens", "new_item_fraction": 0.2}) == "P1-cold"
    assert protocol_name({"dataset": "movielens", "new_item_fraction": 0.2,
                          "new_item_launch": "valid"}) == "P1-cold v2"
    assert protocol_name({"dataset": "p4", "new_item_fraction": 0.0}) == "P4"
    assert protocol_name({"dataset": "movielens", "new_item_fraction": 0.0, "train_fraction": 0.6,
                          "valid_fraction": 0.1, "window_end": 0.8}) == (
        "P1 (test window 0.70-0.80 of the log)")


def _rows(n=4000, users=200, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.05, 0.95, n)
    return {"user": rng.integers(0, users, n), "label": (rng.random(n) < prob).astype(float),
            "bucket": rng.integers(0, 3, n).astype(np.int8),  # no head rows
            "click_probability": prob}, rng


def test_a_lead_on_cold_rows_only_is_resolved_there_and_nowhere_else():
    rows, rng = _rows()
    cold = rows["bucket"] == 0
    base = {s: rows["click_probability"] + rng.normal(0, 0.6, len(cold)) for s in (0, 1)}
    better = {s: np.where(cold, rows["click_probability"] + rng.normal(0, 0.05, len(cold)),
                          base[s] + rng.normal(0, 0.01, len(cold))) for s in (0, 1)}
    out = bucket_bootstrap(rows["user"], rows["label"], rows["bucket"], better, base, 200)
    assert out["head"] is None  # no rows
    assert out["cold"]["resolved"] and out["cold"]["delta_auc_interval"][0] > 0
    assert not out["mid"]["resolved"] and not out["tail"]["resolved"]
    assert out["cold"]["n"] == cold.sum()
    assert out["cold"]["users"] == len(np.unique(rows["user"][cold]))
    expected = np.mean([auc(rows["label"][cold], better[s][cold])
                        - auc(rows["label"][cold], base[s][cold]) for s in (0, 1)])
    assert out["cold"]["delta_auc"] == pytest.approx(expected)


def test_split_report_gives_the_oracle_and_the_gap_each_model_closes():
    rows, rng = _rows()
    truth = rows["click_probability"]
    predictions = {"din": {0: truth + rng.normal(0, 1.0, len(truth))},
                   "ciubm": {0: truth + rng.normal(0, 0.3, len(truth))}}
    report = {"baseline": "din",
              **split_report(EvalConfig(bootstrap_resamples=50), rows, predictions)}
    oracle, din, ciubm = report["oracle"], report["models"]["din"], report["models"]["ciubm"]
    assert oracle["auc"] == pytest.approx(auc(rows["label"], truth))
    assert din["auc"] < ciubm["auc"] < oracle["auc"]
    assert ciubm["oracle_gap_closed"] == pytest.approx(
        (ciubm["auc"] - din["auc"]) / (oracle["auc"] - din["auc"]))
    assert ciubm["vs_baseline"]["n"] == len(truth) and ciubm["vs_baseline"]["resolved"]
    table = "\n".join(bucket_difference_table(report))
    n_cold = (rows["bucket"] == 0).sum()
    users_cold = len(np.unique(rows["user"][rows["bucket"] == 0]))
    assert f"| ciubm | cold | {n_cold:,} ({users_cold:,} users) | +" in table
    assert "| ciubm | head | 0 | n/a | n/a |" in table
    words = "\n".join(resolution_lines(report))
    assert "resolved (interval excludes 0): AUC, gAUC" in words and "head AUC" in words
    assert "AUC gap closed: `ciubm` +" in "\n".join(oracle_lines(report))
    # without the true probability there is no oracle
    rows["click_probability"] = np.full(len(truth), np.nan)
    unknown = split_report(EvalConfig(bootstrap_resamples=0), rows, predictions)
    assert unknown["oracle"] is None and "oracle_gap_closed" not in unknown["models"]["ciubm"]


def test_training_curves_are_drawn_from_the_epoch_history(tmp_path):
    import matplotlib.image

    from mimrec.eval.plot import plot_training_curves

    records = {f"{m}-seed{s}": {"model": m, "seed": s, "epochs": [
        *([{"epoch": 0, "train_loss": None, "valid_auc": 0.70}] if m == "ciubm" else []),
        {"epoch": 1, "train_loss": 0.60, "valid_auc": 0.71},
        {"epoch": 2, "train_loss": 0.55, "valid_auc": 0.72}]}
        for m in ("din", "ciubm") for s in (0, 1)}
    path = tmp_path / "curves.png"
    assert plot_training_curves(records, path)
    image = matplotlib.image.imread(path)
    assert image.shape[0] == 480 and image.shape[1] == 1200  # 10 x 4 inches at 120 dpi
    assert image[..., :3].std() > 0.05  # lines were drawn, not a blank canvas
    assert not list(tmp_path.glob(".*tmp*"))
    assert not plot_training_curves({"din-seed0": {"model": "din", "seed": 0}},
                                    tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
