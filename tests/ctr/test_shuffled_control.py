"""Shuffled-content controls (``ctr.shuffled_controls``): each content model again on vectors
permuted across items, so a report can tell content's own share from the content path's
capacity, and the run serves a content model only when it beats its control; never served."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mimrec.ctr.config import CtrConfig, ModelConfig, ModelSpec, TrainConfig
from mimrec.ctr.stage import SHUFFLE_SEED, run_ctr, shuffled_rows
from mimrec.ctr.variants import model_specs
from mimrec.errors import ConfigError, MimrecError
from mimrec.eval.config import EvalConfig
from mimrec.eval.report import build_report
from mimrec.eval.selection import control_pairs, selection_line, valid_best


def test_shuffled_rows_permute_the_items_and_keep_the_padding_row():
    table = torch.arange(1, 12, dtype=torch.float32)[:, None].repeat(1, 3)
    table[0] = 0
    out = shuffled_rows(table)
    assert torch.equal(out[0], table[0])
    assert sorted(out[1:, 0].tolist()) == table[1:, 0].tolist()
    assert (out[1:, 0] != table[1:, 0]).all()  # every item reads another item's vector
    assert torch.equal(out, shuffled_rows(table))  # one fixed permutation


def test_every_content_model_gets_its_control_unless_switched_off():
    cfg = CtrConfig(variants=("din", "ciubm", "ciubm_raw"), shuffled_controls=True)
    specs = model_specs(cfg)
    assert [s.name for s in specs] == ["din", "ciubm", "ciubm_shuffled", "ciubm_raw",
                                       "ciubm_raw_shuffled"]
    _, ciubm, control, raw, raw_control = specs
    assert control.shuffled_content and raw_control.shuffled_content
    assert not ciubm.shuffled_content
    assert replace(control, name="ciubm", shuffled_content=False) == ciubm
    assert raw_control.source == raw.source == "raw"
    off = replace(cfg, shuffled_controls=False)
    assert [s.name for s in model_specs(off)] == ["din", "ciubm", "ciubm_raw"]
    clash = replace(cfg, models=(ModelSpec("ciubm_shuffled"),))
    with pytest.raises(ConfigError, match="ciubm_shuffled.*shuffled_controls = false"):
        model_specs(clash)


def _record(name, auc, **spec):
    blocks = ["id_attention"] if name == "din" else ["id_attention", "sa_ta"]
    return {"model": name, "spec": {"name": name, "blocks": blocks, **spec},
            "epochs": [{"valid_auc": auc}]}


def test_a_control_is_never_chosen_and_content_must_beat_it():
    """Content-free gains (the control's) do not make the run serve the content model."""
    records = {"din-seed0": _record("din", 0.70), "ciubm-seed0": _record("ciubm", 0.72),
               "ciubm_shuffled-seed0": _record("ciubm_shuffled", 0.73, shuffled_content=True)}
    assert control_pairs(records) == {"ciubm": "ciubm_shuffled"}
    assert valid_best(records) == "din"
    line = selection_line(records)
    assert line.startswith("content did not beat its shuffled-content control on valid: "
                           "serving din (ciubm 0.7200, with shuffled content (ciubm_shuffled) "
                           "0.7300, din 0.7000")
    records["ciubm_shuffled-seed0"] = _record("ciubm_shuffled", 0.705, shuffled_content=True)
    assert valid_best(records) == "ciubm"
    assert selection_line(records) == (
        "valid-best model: serving ciubm (valid AUC 0.7200 vs din 0.7000); with shuffled content "
        "(ciubm_shuffled) 0.7050: content's own share +0.0150")
    assert valid_best(records, margin=0.02) == "din"  # the margin applies to the control too
    records["ciubm-seed0"] = _record("ciubm", 0.69)
    assert valid_best(records) == "din"
    assert selection_line(records).startswith("content did not beat the ID-only model")


def test_a_run_with_the_control_reports_contents_share_and_does_not_serve_it(artifacts,
                                                                            tmp_path):
    data_cfg, data, index = artifacts
    run = index.parent
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier")),
                    variants=("din", "ciubm"), shuffled_controls=True,
                    train=TrainConfig(max_epochs=1, seeds=(0,), threads=1))
    records = run_ctr(cfg, data_cfg, data, run / "ctr", index_dir=index)
    assert records["ciubm_shuffled-seed0"]["content"]["shuffled"] == SHUFFLE_SEED
    assert "shuffled" not in records["ciubm-seed0"]["content"]
    with np.load(run / "ctr" / "predictions.npz") as p:
        assert not np.array_equal(p["ciubm-seed0/test"], p["ciubm_shuffled-seed0/test"])
    manifest = json.loads((run / "ctr" / "manifest.json").read_text())
    assert control_pairs(manifest["metrics"]) == {"ciubm": "ciubm_shuffled"}

    report = build_report(EvalConfig(bootstrap_resamples=50, plot=False), run / "ctr",
                          run / "report")
    share = report["models"]["ciubm"]["vs_control"]
    assert share["control"] == "ciubm_shuffled" and "delta_auc_interval" in share
    assert "vs_control" not in report["models"]["ciubm_shuffled"]
    assert report["valid_best"] != "ciubm_shuffled"
    assert "Content's own share" in (run / "report" / "report.md").read_text()

    from mimrec.ctr.bundle_writer import write_serving_bundle

    bundle = json.loads((write_serving_bundle(run) / "bundle.json").read_text())
    assert {m["name"] for m in bundle["models"].values()} == {"din", "ciubm"}
    assert list(bundle["controls"]) == ["ciubm_shuffled-seed0"]
    from mimrec.serve.bundle import load_bundle

    served = load_bundle(run)  # what the report chose, knowing the control
    assert served.model_key == f"{report['valid_best']}-seed0"
    with pytest.raises(MimrecError, match="shuffled-content control.*not servable"):
        load_bundle(run, "ciubm_shuffled")
