"""The CLI end to end on a small slice of real MovieLens data, and its one-line errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.encoders.tiny_towers import save_tiny_text_model

QUICK = ["--set", "ctr.train.seeds=[0, 1]", "--set", "ctr.train.max_epochs=1",
         "--set", "ctr.model.mlp_units=[16]", "--set", "pretrain.align_epochs=1",
         "--set", "pretrain.adapt_epochs=0", "--set", "csft.epochs=1",
         "--set", "csft.eval_raw=false", "--set", "ctr.variants=['din', 'ciubm']"]


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """A tiny random BERT folder: the CLI's loading path, at unit-test speed."""
    return save_tiny_text_model(tmp_path_factory.mktemp("tiny") / "bert")


def mimrec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mimrec", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_run_writes_every_artifact_and_the_report(ml_slice, tiny_text, tmp_path):
    out = tmp_path / "run"
    r = mimrec("run", "configs/movielens.toml", "--out", out, "--set", "data.dataset=files",
               "--set", f"data.path={ml_slice}", "--set", f"encoder.text_model={tiny_text}",
               *QUICK)
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout and "din" in r.stdout
    report = json.loads((out / "report.json").read_text())
    din = report["models"]["din"]
    assert report["protocol"] == "P1"
    assert 0.5 < din["auc"] < 1 and 0.5 < din["gauc"] < 1 and din["logloss"] > 0
    # fixed edges 1/10/100 (configs/movielens.toml); a bucket without test rows on this slice
    # is merged into its neighbour, with a note: no bucket is empty
    assert set(din["buckets"]) <= {"cold", "tail", "mid", "head"}
    assert len(report["buckets"]["notes"]) == 4 - len(din["buckets"])
    assert all(b["n"] > 0 for b in din["buckets"].values())
    assert set(report["buckets"]["edges"]) == set(din["buckets"])
    assert sum(b["n"] for b in din["buckets"].values()) == report["data"]["test"]["events"]
    assert (out / "report.md").read_text().startswith("# mimrec report")
    assert (out / "report_buckets.png").stat().st_size > 1000
    assert (out / "report_curves.png").stat().st_size > 1000
    assert "![Training curves](report_curves.png)" in (out / "report.md").read_text()
    assert "din-seed1 epoch 1/1: train loss" in r.stdout
    log = (out / "logs" / "run.log").read_text()  # every stage's lines, time-stamped
    for line in ("== mimrec run", "data: files", "pretrain: item encoder", "csft:", "index:",
                 "train: din, ciubm", "din-seed0 epoch 1/1: train loss", "ciubm-seed1: test AUC",
                 "report:"):
        assert line in log, line
    for stage in ("data", "pretrain", "csft", "index", "ctr"):
        manifest = json.loads((out / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["hash"] and manifest["config"]
    ctr = json.loads((out / "ctr" / "manifest.json").read_text())
    assert ctr["parents"]["data"]["hash"] == json.loads(
        (out / "data" / "manifest.json").read_text())["hash"]
    assert set(ctr["metrics"]) == {"din-seed0", "din-seed1", "ciubm-seed0", "ciubm-seed1",
                                   "ciubm_shuffled-seed0", "ciubm_shuffled-seed1"}  # its control
    md = (out / "report.md").read_text()  # content's share, or why CiUBM's content is off
    assert "Content's own share" in md or "Content switched off in `ciubm`" in md
    assert ctr["metrics"]["ciubm-seed0"]["content"]["encoder"] == "csft"
    assert set(report["retrieval"]) == {"pretrain", "csft"}
    assert "ciubm" in report["models"] and "alignment" in report
    vs = report["models"]["ciubm"]["vs_baseline"]  # paired bootstrap against din
    assert vs["seeds"] == [0, 1] and vs["resamples"] == 1000
    low, high = vs["delta_auc_interval"]
    assert low <= vs["delta_auc"] <= high
    assert vs["delta_auc"] == pytest.approx(report["models"]["ciubm"]["auc"] - din["auc"])
    assert "vs_baseline" not in din and "ΔAUC [interval]" in (out / "report.md").read_text()


def test_stages_run_one_by_one_and_p1_cold(ml_slice, tmp_path):
    out = tmp_path / "cold"
    common = ["--out", out, "--set", "data.dataset=files", "--set", f"data.path={ml_slice}",
              "--set", "data.new_item_fraction=0.2", *QUICK, "--set", "ctr.variants=['din']"]
    r = mimrec("data", "configs/movielens.toml", *common)
    assert r.returncode == 0, r.stderr
    for stage in ("train", "eval"):  # later stages read OUT/config.toml: no CONFIG, no --set
        r = mimrec(stage, "--out", out)
        assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "P1-cold"
    line = _one_line_error(mimrec("train", "configs/movielens.toml", "--out", out))
    assert "data.dataset" in line and "config.toml" in line  # disagrees with what made OUT/data
    assert report["models"]["din"]["buckets"]["cold"]["n"] > 0.1 * report["data"]["test"]["events"]


def _one_line_error(r):
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimrec: error:")
    return lines[0]


def test_user_mistakes_are_one_line_errors(ml_slice, tmp_path):
    out = tmp_path / "x"
    line = _one_line_error(mimrec("run", "configs/movielens.toml", "--out", out,
                                  "--set", "ctr.modle.x=1"))
    assert "ctr.modle" in line
    line = _one_line_error(mimrec("run", tmp_path / "missing.toml", "--out", out))
    assert "missing.toml" in line
    items = pd.read_parquet(ml_slice / "items.parquet").drop(columns=["title"])
    items.to_parquet(ml_slice / "items.parquet")
    line = _one_line_error(mimrec("data", "configs/movielens.toml", "--out", out,
                                  "--set", "data.dataset=files", "--set", f"data.path={ml_slice}"))
    assert "items.parquet" in line and "'title'" in line
    line = _one_line_error(mimrec("train", "configs/movielens.toml", "--out", tmp_path / "none"))
    assert "not a finished mimrec artifact" in line
    r = mimrec("train", "configs/movielens.toml", "--out", out, "--set", "ctr.variants=['ciubm']")
    assert "not a finished mimrec artifact" in _one_line_error(r)
    assert not (out / "data").exists()  # nothing half-written


def test_help_explains_each_stage():
    r = mimrec("--help")
    assert r.returncode == 0 and "run" in r.stdout and "train" in r.stdout
    r = mimrec("train", "--help")
    assert "--set" in r.stdout and "OUT/ctr" in r.stdout


def test_the_cli_starts_without_the_heavy_libraries():
    """``mimrec --help`` (and the supervisor of ``mimrec serve --workers N``) does not load
    scikit-learn, pandas or torch just to parse its arguments (the config's constants once
    pulled scikit-learn in: 180 MiB and a second of start-up)."""
    code = ("import sys, mimrec.cli; "
            "print([m for m in ('sklearn', 'pandas', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_content_that_means_nothing_never_costs_valid_and_the_choice_is_said(ml100k, tiny_text,
                                                                              tmp_path):
    """Titles replaced by random words; genres, years and the attribute tokens (genre / year /
    decade) shuffled across items, so no content field says anything about its item. Each
    content model starts from DIN and keeps the start on valid (never below DIN on valid), and
    is trained again on item-shuffled vectors (its control, ``ctr.shuffled_controls``); the run
    says it serves DIN and the service serves DIN.

    Measured here (8 epochs, 2 seeds, 120 users): C-SFT's vectors do not beat the raw ones on
    P2, so the index stage stores raw vectors for both sources (``ciubm`` = ``ciubm_raw``).
    Valid AUC DIN 0.7150, CiUBM 0.7186, its control 0.7187: the gain is the content path's
    capacity, so DIN is served ("content did not beat its shuffled-content control"). Serving
    CiUBM would have cost test AUC: 0.6736 against DIN's 0.6761. (Before the attribute tokens
    were shuffled too, they still carried each item's real genres and year, and CiUBM on C-SFT
    vectors beat its control and was served.)

    Issue 13 also asks CiUBM itself to stay within 0.002 gAUC of DIN here. As trained it does
    not (test gAUC 0.6543 against 0.6576 on 25 test users: the content path's capacity fits
    meaningless content), so a content model that does not beat its control on valid has its
    content switched off (``mimrec.eval.selection.to_switch_off``): its weights are its DIN
    start and its predictions DIN's.
    """
    import dataclasses

    import numpy as np

    from mimrec.eval.selection import valid_best
    from tests.conftest import write_slice

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    items = ml100k.items.copy()
    items["title"] = [" ".join(rng.choice(words, 3)) for _ in range(len(items))]
    for column in ("genres", "year", "attributes"):
        items[column] = items[column].to_numpy()[rng.permutation(len(items))]
    folder = write_slice(dataclasses.replace(ml100k, items=items), tmp_path / "d")
    out = tmp_path / "run"
    r = mimrec("run", "configs/movielens.toml", "--out", out, "--set", "data.dataset=files",
               "--set", f"data.path={folder}", "--set", f"encoder.text_model={tiny_text}",
               *QUICK, "--set", "ctr.train.max_epochs=8",
               "--set", "ctr.variants=['din', 'ciubm', 'ciubm_raw']")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    said = " ".join(r.stdout.split())  # (the console wraps long lines)
    assert " ".join(report["selection"].split()) in said and "serving din" in said
    records = json.loads((out / "ctr" / "manifest.json").read_text())["metrics"]
    assert {r["model"] for r in records.values()} == {
        "din", "ciubm", "ciubm_shuffled", "ciubm_raw", "ciubm_raw_shuffled"}
    for seed in (0, 1):
        din, ciubm = (records[f"{m}-seed{seed}"]["epochs"] for m in ("din", "ciubm"))
        assert ciubm[0]["epoch"] == 0 and ciubm[0]["valid_auc"] == max(e["valid_auc"] for e in din)
        assert max(e["valid_auc"] for e in ciubm) >= max(e["valid_auc"] for e in din)
    assert valid_best(records, margin=0.001) == "din" == report["valid_best"]
    assert report["selection"].startswith(
        "content did not beat its shuffled-content control on valid: serving din")
    assert "content switched off in ciubm, ciubm_raw" in report["selection"]
    for model in ("ciubm", "ciubm_raw"):  # back to their DIN start: content adds nothing
        assert report["content_off"][model]["control"] == f"{model}_shuffled"
        for seed in (0, 1):
            assert records[f"{model}-seed{seed}"]["test"] == records[f"din-seed{seed}"]["test"]
    from mimrec.serve.bundle import load_bundle
    assert load_bundle(out).model_key.startswith("din-seed")
    models = report["models"]
    assert abs(models["ciubm"]["gauc"] - models["din"]["gauc"]) <= 0.002


def test_careless_settings_and_files_are_one_line_errors(small_frames, tmp_path):
    """Each of these ended in a traceback, or replaced a trained artifact, before."""
    out = tmp_path / "run"
    (out / "ctr").mkdir(parents=True)
    (out / "ctr" / "manifest.json").write_text('{"stage": "ctr"}')
    for setting in ("ctr.train.batch_size=-5", "ctr.train.max_epochs=0", "ctr.train.seeds=[]",
                    "ctr.variants=[]", "ctr.train.embedding_l2=-1"):
        line = _one_line_error(mimrec("train", "configs/movielens.toml", "--out", out,
                                      "--set", setting))
        assert setting.split("=")[0] in line and "out of range" in line
    assert (out / "ctr" / "manifest.json").read_text() == '{"stage": "ctr"}'  # untouched
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes("name = 'caf\u00e9'\n".encode("latin-1"))
    assert "not UTF-8" in _one_line_error(mimrec("data", latin1, "--out", out))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is not a folder" in _one_line_error(mimrec("data", "configs/movielens.toml",
                                                       "--out", a_file))
    assert a_file.read_text() == "x"


def test_a_table_too_small_for_three_splits_is_refused_at_the_data_stage(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 3],
                  "rating": [5, 2, 4]}).to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "year": ["1", "2"],
                  "genres": ["x", "y"]}).to_csv(folder / "items.csv", index=False)
    out = tmp_path / "run"
    line = _one_line_error(mimrec("data", "configs/movielens.toml", "--out", out,
                                  "--set", "data.dataset=files", "--set", f"data.path={folder}",
                                  "--set", "data.user_features=[]",
                                  "--set", "encoder.use_attributes=false"))  # checked first
    assert "too small to form train/valid/test" in line and "test 0 clicks / 0 non-clicks" in line
    assert not (out / "data").exists()


def test_p4_runs_every_stage_with_images_and_reports_the_oracle(tiny_text, tmp_path):
    """Protocol P4 on synthetic Fashion-MNIST files: images go through pretrain, C-SFT, the store
    and CiUBM; the report names the simulation and gives the oracle on the same test rows."""
    from tests.encoders.tiny_towers import save_tiny_image_weights
    from tests.pretrain.test_fashion import synthetic_fashion

    synthetic_fashion(tmp_path / "fm", 200, seed=0)
    weights = save_tiny_image_weights(tmp_path / "lite0.safetensors")
    out = tmp_path / "p4"
    r = mimrec("run", "configs/fashion_ctr.toml", "--out", out,
               "--set", f"data.path={tmp_path / 'fm'}", "--set", "data.p4.users=80",
               "--set", "data.p4.items_per_class=10", "--set", f"encoder.text_model={tiny_text}",
               "--set", f"encoder.image_model={weights}", "--set", "csft.batch_size=32",
               "--set", "ctr.train.workers=1", "--set", "eval.bootstrap_resamples=50", *QUICK,
               "--set", "ctr.train.seeds=[0]")
    assert r.returncode == 0, r.stderr
    assert "simulated" in r.stdout and "oracle" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "P4" and "simulated" in report["note"]
    oracle, din = report["oracle"], report["models"]["din"]
    assert sum(b["n"] for b in oracle["buckets"].values()) == report["data"]["test"]["events"]
    assert 0.6 < oracle["auc"] <= 1 and oracle["buckets"]["cold"]["n"] > 0
    ciubm = report["models"]["ciubm"]
    gap = (ciubm["auc"] - din["auc"]) / (oracle["auc"] - din["auc"])
    assert ciubm["oracle_gap_closed"] == pytest.approx(gap)
    cold = ciubm["vs_baseline_buckets"]["cold"]
    assert cold["n"] == din["buckets"]["cold"]["n"] and 0 < cold["users"] <= cold["n"]
    assert report["valid"]["models"]["din"]["buckets"]["cold"]["n"] > 0  # launched in valid
    alignment = json.loads((out / "pretrain" / "manifest.json").read_text())["metrics"]
    assert "image->text_recall@10_after" in alignment
    csft = json.loads((out / "csft" / "manifest.json").read_text())["config"]["encoder"]
    assert csft["use_image"] is True
    text = (out / "report.md").read_text()
    assert "oracle (true click probability)" in text and "resolved" in text
