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
from mimrec.eval.selection import control_pairs, selection_line, to_switch_off, valid_best


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


def _config(**model) -> CtrConfig:
    return CtrConfig(model=ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier"),
                                       **model),
                     variants=("din", "ciubm"), shuffled_controls=True,
                     train=TrainConfig(max_epochs=1, seeds=(0,), threads=1))


def test_content_that_does_not_beat_its_control_is_switched_off():
    """A model started from another whose valid gain is its control's (within the margin) is
    listed; one from scratch, or ahead of its control by more than the margin, is not."""
    records = {"din-seed0": _record("din", 0.70),
               "ciubm-seed0": _record("ciubm", 0.72, init_from="din"),
               "ciubm_shuffled-seed0": _record("ciubm_shuffled", 0.7195, init_from="din",
                                               shuffled_content=True)}
    assert to_switch_off(records, margin=0.001) == {"ciubm": "ciubm_shuffled"}
    assert to_switch_off(records, margin=0.0) == {}
    records["ciubm-seed0"]["spec"]["init_from"] = ""
    records["ciubm_shuffled-seed0"]["spec"]["init_from"] = ""
    assert to_switch_off(records, margin=0.001) == {}  # no start to return to


def test_a_run_with_the_control_reports_contents_share_and_does_not_serve_it(artifacts,
                                                                            tmp_path):
    """(CiUBM from scratch here: one started from DIN that loses to its control has its content
    switched off, the next test.)"""
    data_cfg, data, index = artifacts
    run = index.parent
    records = run_ctr(_config(ciubm_from_din=False), data_cfg, data, run / "ctr", index_dir=index)
    assert not any("content_off" in r for r in records.values())
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


def test_a_content_model_that_loses_to_its_control_keeps_its_din_start(artifacts, tmp_path):
    """CiUBM started from DIN, one epoch: its control is ahead on valid (0.7529 vs 0.7525 here),
    so its content is switched off: its weights are its DIN start, its predictions DIN's to the
    last bit, and the report, the selection line and the manifest say so, with what it scored
    as trained. The service still serves DIN, and serves the switched-off CiUBM when asked."""
    data_cfg, data, index = artifacts
    run = index.parent
    records = run_ctr(_config(), data_cfg, data, run / "ctr", index_dir=index)
    off = records["ciubm-seed0"]["content_off"]
    assert off["control"] == "ciubm_shuffled" and off["valid_auc"] <= off["control_valid_auc"]
    as_trained = records["ciubm-seed0"]["epochs"]
    assert off["as_trained"]["valid_auc"] == max(e["valid_auc"] for e in as_trained)
    assert off["as_trained"]["test"] != records["ciubm-seed0"]["test"]
    assert records["ciubm-seed0"]["test"] == records["din-seed0"]["test"]
    assert "content_off" not in records["ciubm_shuffled-seed0"]
    with np.load(run / "ctr" / "predictions.npz") as p:
        for split in ("valid", "test"):
            assert np.array_equal(p[f"ciubm-seed0/{split}"], p[f"din-seed0/{split}"])
    assert not list((run / "ctr").glob("*.npy"))  # no prediction files left behind

    report = build_report(EvalConfig(bootstrap_resamples=50, plot=False), run / "ctr",
                          run / "report")
    assert report["valid_best"] == "din"
    assert "content switched off in ciubm: its weights are its start" in report["selection"]
    summary = report["content_off"]["ciubm"]
    assert summary["test_as_trained"]["auc"] == pytest.approx(off["as_trained"]["test"]["auc"])
    assert "vs_control" not in report["models"]["ciubm"]
    assert report["models"]["ciubm"]["auc"] == report["models"]["din"]["auc"]
    assert "Content switched off in `ciubm`" in (run / "report" / "report.md").read_text()

    from mimrec.ctr.bundle_writer import write_serving_bundle
    from mimrec.serve.bundle import load_bundle

    write_serving_bundle(run)
    assert load_bundle(run).model_key == "din-seed0"
    assert load_bundle(run, "ciubm", encoder=False).model_key == "ciubm-seed0"
