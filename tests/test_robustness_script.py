"""scripts/robustness.py's table from run reports (the runs themselves are whole `mimrec run`s,
measured by hand: README "Robustness of the defaults")."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "scripts" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(gauc: float, auc: float, **extra) -> dict:
    return {"gauc": gauc, "auc": auc, **extra}


def _vs(delta: float) -> dict:
    return {"delta_gauc_interval": [delta - 0.001, delta + 0.001], "delta_auc": delta,
            "delta_auc_interval": [delta - 0.001, delta + 0.001]}


def test_a_switched_off_content_model_is_said_in_the_table(tmp_path):
    robustness = _script()
    run = tmp_path / "p1-w2"
    run.mkdir()
    off = {"control": "ciubm_shuffled", "start": "din", "margin": 0.001, "valid_auc": 0.7320,
           "control_valid_auc": 0.7313, "test_as_trained": {"auc": 0.7410, "gauc": 0.6986}}
    report = {"protocol": "P1", "valid_best": "din", "content_off": {"ciubm": off},
              "models": {"din": _model(0.6976, 0.7393),
                         "ciubm": _model(0.6976, 0.7393, vs_baseline=_vs(0.0))},
              "valid": {"models": {"din": _model(0.7318, 0.7301),
                                   "ciubm": _model(0.7318, 0.7301, vs_baseline=_vs(0.0))}}}
    (run / "report.json").write_text(json.dumps(report))
    row = robustness.summarise(run)
    assert row["content_off"] == off and row["passes"] == {"valid_gauc": True, "test_gauc": True}
    table = robustness.markdown({"p1-w2": row})
    assert ("switched off (valid AUC as trained 0.7320, control 0.7313; test AUC as trained "
            "0.7410)") in table
    assert "| din |" in table and "| yes |" in table

    report["content_off"] = {}
    report["models"]["ciubm"]["vs_control"] = {"delta_auc": 0.003,
                                               "delta_auc_interval": [0.001, 0.005]}
    (run / "report.json").write_text(json.dumps(report))
    row = robustness.summarise(run)
    assert "content_off" not in row
    assert "- / +0.0030 [+0.0010, +0.0050]" in robustness.markdown({"p1-w2": row})
