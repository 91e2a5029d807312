"""The benchmark scripts run on tiny inputs (no timing is asserted anywhere)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimrec.data.sample_shards import read_samples
from mimrec.data.samples import TEST, TRAIN, VALID
from mimrec.store.center import StoreInfo, write_version

FUXICTR_PYTHON = Path(".venv-fuxictr/bin/python")


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([*args], capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def data_run(tmp_path_factory) -> Path:
    """A run folder holding only the P1 data artifact of MovieLens-100K (built, not committed)."""
    out = tmp_path_factory.mktemp("bench") / "run"
    run(sys.executable, "-m", "mimrec", "data", "configs/movielens.toml", "--out", str(out))
    return out


def test_sample_builder_benchmark_smoke():
    r = run(sys.executable, "benchmarks/bench_sample_builder.py", "--smoke")
    lines = [line for line in r.stdout.splitlines() if "events/s" in line]
    assert len(lines) == 3 and "16x" in lines[-1]


def test_store_lookup_benchmark_smoke(tmp_path):
    r = run(sys.executable, "benchmarks/bench_store_lookup.py", "--smoke",
            "--json", str(tmp_path / "r.json"))
    result = json.loads((tmp_path / "r.json").read_text())["synthetic"]
    assert result["lookup"]["ratio"] > 0 and result["gather"]["ratio"] > 0
    assert "ratio ours/numpy" in r.stdout


def test_store_scale_benchmark_smoke(tmp_path):
    run(sys.executable, "benchmarks/bench_store_scale.py", "--smoke", "--json",
        str(tmp_path / "r.json"))
    result = json.loads((tmp_path / "r.json").read_text())
    for key in ("items", "upsert_p50_ms", "upsert_p99_ms", "lookup_vs_numpy",
                "disk_bytes_after_adds", "table_bytes", "open_s"):
        assert result[key] > 0, key
    assert result["items"] == 2000 and result["upsert_p99_ms"] >= result["upsert_p50_ms"]


def test_ctr_throughput_benchmark_smoke(data_run, tmp_path):
    run(sys.executable, "benchmarks/bench_ctr_throughput.py", "--run", str(data_run), "--smoke",
        "--fuxictr", "--json", str(tmp_path / "r.json"))
    result = json.loads((tmp_path / "r.json").read_text())
    for model in ("mimrec din", "mimrec ciubm"):
        assert result[model]["train_samples_per_second"] > 0
    assert result["content"].startswith("random")  # the run has no index: said so


@pytest.mark.slow  # FuxiCTR starts a local Ray instance: about a minute even on tiny data
@pytest.mark.skipif(not FUXICTR_PYTHON.exists(),
                    reason="FuxiCTR benchmark environment not built (make bench-env)")
def test_fuxictr_benchmark_smoke(data_run, tmp_path):
    result = fuxictr_smoke(data_run, tmp_path)
    assert result["throughput"]["train_samples_per_second"] > 0


def fuxictr_smoke(run_dir: Path, tmp_path: Path, *extra: str) -> dict:
    """benchmarks/fuxictr_p1.py --smoke on a run's data artifact, seed 0; its result JSON."""
    out = tmp_path / "fx.json"
    run(str(FUXICTR_PYTHON), "benchmarks/fuxictr_p1.py", str(run_dir / "data"),
        "--work", str(tmp_path / "work"), "--out", str(out), "--smoke", "--seeds", "0", *extra,
        timeout=600)
    result = json.loads(out.read_text())
    assert 0 <= result["seeds"]["0"]["test"]["auc"] <= 1
    return result
    test_rows = sum(b["n"] for b in result["seeds"]["0"]["test"]["buckets"].values())
    assert np.load(result["seeds"]["0"]["predictions"]).shape == (test_rows,)


@pytest.fixture(scope="module")
def p4_data_run(tmp_path_factory) -> Path:
    """A run folder holding only a tiny P4 data artifact (synthetic Fashion-MNIST-shaped photos)."""
    from tests.pretrain.test_fashion import synthetic_fashion

    root = tmp_path_factory.mktemp("bench-p4")
    synthetic_fashion(root / "fm", 200, seed=0)
    out = root / "run"
    run(sys.executable, "-m", "mimrec", "data", "configs/fashion_ctr.toml", "--out", str(out),
        "--set", f"data.path={root / 'fm'}", "--set", "data.p4.users=60",
        "--set", "data.p4.items_per_class=6")
    return out


def fuxictr_features(data: Path):
    """The FuxiCTR script's features and event table for a data artifact (no FuxiCTR needed)."""
    import pandas as pd

    fx = load_script("fuxictr_p1")
    items = pd.read_parquet(data / "items.parquet")
    users = (pd.read_parquet(data / "users.parquet") if (data / "users.parquet").is_file()
             else None)
    features = fx.data_features(data, items, users)
    s = read_samples(data / "samples")
    table = fx.event_table(s, items, users, fx.event_sequences(s)[1], features)
    return fx, features, items, s, table


def test_fuxictr_features_come_from_the_artifact_movielens_unchanged(data_run):
    """ML-100K: the configured columns are the ones the script hard-coded before (same order,
    genres a sequence padded to the widest row), and the event rows carry the same values."""
    fx, features, items, s, table = fuxictr_features(data_run / "data")
    assert tuple(f.name for f in features) == fx.USER_FEATURES + fx.ITEM_FEATURES
    assert {f.name: f.width for f in features if f.width} == {
        "genres": max(len(g) for g in items["genres"])}
    cols = fx.feature_cols(features)
    assert [c["name"] for c in cols] == [*fx.USER_FEATURES, *fx.ITEM_FEATURES, *fx.META]
    genres = next(c for c in cols if c["name"] == "genres")
    assert genres["type"] == "sequence" and genres["splitter"] == "^"
    assert table["genres"].tolist() == ["^".join(g) for g in items["genres"].iloc[s.item]]
    assert table["year"].tolist() == items["year"].iloc[s.item].astype(str).tolist()
    assert table["user_id"].tolist() == s.user_ids[s.user].astype(str).tolist()


def test_fuxictr_sequences_hold_each_events_p1_cold_v2_history(tmp_path):
    """P1-cold v2 removes new items from train histories only, so a user's history differs by
    split: the FuxiCTR rows hand its loader exactly each event's history, train and valid alike."""
    out = tmp_path / "run"
    run(sys.executable, "-m", "mimrec", "data", "configs/movielens.toml", "--out", str(out),
        "--set", "data.new_item_fraction=0.2", "--set", "data.new_item_launch=valid")
    fx, _, _, s, table = fuxictr_features(out / "data")
    seqs, seq_len = fx.event_sequences(s)
    fx.check_histories(s, seqs, seq_len)  # raises on the first event that differs
    assert (table["user_index"].to_numpy() == np.arange(1, len(s.label) + 1)).all()
    assert (table["seq_len"].to_numpy() == seq_len).all()
    new = s.new_item
    train, valid = s.split == TRAIN, s.split == VALID
    hist = [seqs[n + 1] - 1 for n in range(len(s.label))]
    assert not any(new[h].any() for h, t in zip(hist, train, strict=True) if t)
    assert any(new[h].any() for h, v in zip(hist, valid, strict=True) if v)  # the case tested
    broken = [q.copy() for q in seqs]
    broken[int(np.flatnonzero(valid & (seq_len > 0))[0]) + 1][-1] += 1
    with pytest.raises(AssertionError, match="differs from the P1 history"):
        fx.check_histories(s, broken, seq_len)


def test_fuxictr_features_on_p4_without_users_table(p4_data_run, tmp_path):
    """P4: no users table and no user features: user_id from the samples; class and brand are
    categorical item features; a content file marks item_id only."""
    data = p4_data_run / "data"
    assert not (data / "users.parquet").exists()
    fx, features, items, s, table = fuxictr_features(data)
    assert [(f.name, f.source, f.width) for f in features] == [
        ("user_id", "user", 0), ("item_id", "item", 0), ("class", "item", 0),
        ("brand", "item", 0)]
    assert table["class"].tolist() == items["class"].iloc[s.item].tolist()
    assert table["user_id"].tolist() == [str(u) for u in s.user_ids[s.user]]
    npz = tmp_path / "v.npz"
    np.savez(npz, key=items["item_id"].astype(str).to_numpy(dtype=str),
             value=np.zeros((len(items), 3), dtype=np.float32))
    cols = {c["name"]: c for c in fx.feature_cols(features, npz)}
    assert cols["item_id"]["pretrain_dim"] == 3 and "pretrained_emb" not in cols["class"]


def test_fuxictr_features_name_a_missing_column(p4_data_run, tmp_path):
    import shutil

    import pandas as pd

    from mimrec.errors import DataError

    fx = load_script("fuxictr_p1")
    data = tmp_path / "data"
    shutil.copytree(p4_data_run / "data", data)
    items = pd.read_parquet(data / "items.parquet").drop(columns=["brand"])
    with pytest.raises(DataError, match=r"items.parquet: no column 'brand'.*item_features"):
        fx.data_features(data, items, None)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["config"]["user_features"] = ["age"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="user_features.*no users.parquet"):
        fx.data_features(data, pd.read_parquet(data / "items.parquet"), None)


@pytest.mark.slow  # FuxiCTR starts a local Ray instance
@pytest.mark.skipif(not FUXICTR_PYTHON.exists(),
                    reason="FuxiCTR benchmark environment not built (make bench-env)")
def test_fuxictr_benchmark_smoke_on_p4(p4_data_run, tmp_path):
    """FuxiCTR's DIN on a P4-shaped artifact: its feature map holds P4's columns, no user ones."""
    result = fuxictr_smoke(p4_data_run, tmp_path, "--no-throughput")
    spec = json.loads(next((tmp_path / "work").rglob("feature_map.json")).read_text())
    names = {name: f for entry in spec["features"] for name, f in entry.items()}
    assert {"user_id", "item_id", "class", "brand"} <= set(names)
    assert not {"age", "gender", "occupation", "genres", "year"} & set(names)
    assert names["class"]["type"] == names["brand"]["type"] == "categorical"
    test_rows = sum(b["n"] for b in result["seeds"]["0"]["test"]["buckets"].values())
    assert np.load(result["seeds"]["0"]["predictions"]).shape == (test_rows,)


def test_ctr_quality_benchmark_oracle_only_where_the_data_knows_it(data_run, p4_data_run):
    """P4's test rows carry the true click probability: the oracle is scored on exactly them
    (bucket sizes of the test split); MovieLens has none."""
    quality = load_script("bench_ctr_quality")
    assert quality.oracle_on_test(data_run) is None
    oracle = quality.oracle_on_test(p4_data_run)
    s = read_samples(p4_data_run / "data" / "samples")
    assert 0.5 < oracle["auc"] <= 1
    assert sum(b["n"] for b in oracle["buckets"].values()) == int((s.split == TEST).sum())


def test_p4_ceiling_finds_the_style_term_a_din_without_it_misses(p4_data_run, tmp_path):
    """A "DIN" that knows every term of P4's click logit but the style term: adding the exact
    style gains AUC on valid and test; no store in the run means no store rows."""
    import shutil

    from mimrec.data.p4 import STYLE_DIMS

    ceiling = load_script("p4_ceiling")
    run_dir = Path(shutil.copytree(p4_data_run, tmp_path / "run"))
    _, data, world, world_row, user_world = ceiling.run_world(run_dir)
    s = data.samples
    predictions = {}
    for split, name in ((VALID, "valid"), (TEST, "test")):
        rows = np.flatnonzero(s.split == split)
        user, item = user_world[s.user[rows]], world_row[s.item[rows]]
        style = (world.taste[user] * world.style[item]).sum(1) / np.sqrt(STYLE_DIMS)
        predictions[f"din-seed0/{name}"] = 1 / (1 + np.exp(-(world.logit(user, item) - style)))
    (run_dir / "ctr").mkdir()
    np.savez(run_dir / "ctr" / "predictions.npz", **predictions)
    out = ceiling.main(["--run", str(run_dir), "--json", str(tmp_path / "ceiling.json")])
    assert list(out["style_r2"]) == ["class only"]
    for name in ("valid", "test"):
        exact = out["bounds"][name]["exact style"]["all"]
        assert exact["gain"] > 0.01 and exact["rows"] > 0
        assert "taste from train x true z" in out["bounds"][name]
    assert json.loads((tmp_path / "ceiling.json").read_text())["bounds"]["test"]


@pytest.mark.slow
@pytest.mark.skipif(not FUXICTR_PYTHON.exists(),
                    reason="FuxiCTR benchmark environment not built (make bench-env)")
def test_fuxictr_content_peer_smoke(data_run, tmp_path):
    """FuxiCTR DIN + frozen item vectors through its pretrained-embedding feature: every item of
    the file joins the item_id vocabulary (cold ones too), the vectors are loaded frozen."""
    import pandas as pd

    items = pd.read_parquet(data_run / "data" / "items.parquet")
    npz = tmp_path / "content.npz"
    np.savez(npz, key=np.asarray(items["item_id"].astype(str), dtype=str),
             value=np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32))
    out = tmp_path / "fx.json"
    run(str(FUXICTR_PYTHON), "benchmarks/fuxictr_p1.py", str(data_run / "data"),
        "--work", str(tmp_path / "work"), "--out", str(out), "--smoke", "--seeds", "0",
        "--no-throughput", "--content", str(npz), timeout=600)
    result = json.loads(out.read_text())
    assert result["config"] == "tuned+content" and 0 <= result["seeds"]["0"]["test"]["auc"] <= 1
    spec = json.loads(next((tmp_path / "work").rglob("feature_map.json")).read_text())
    item = next(f["item_id"] for f in spec["features"] if "item_id" in f)  # a list of {name: spec}
    assert item["pretrain_usage"] == "concat" and item["freeze_emb"] and item["pretrain_dim"] == 8
    assert item["vocab_size"] >= len(items) + 1  # every catalogue item has a row (+ padding)


def test_index_scale_benchmark_smoke(tmp_path):
    """bench_index_scale end to end on 2,000 items (one shard, no kill): the data stage, the
    index stage with the packaged text model, the store read back."""
    out = tmp_path / "index.json"
    run(sys.executable, "benchmarks/bench_index_scale.py", "--items", "2000", "--kill-after", "0",
        "--work", str(tmp_path / "w"), "--json", str(out))
    result = json.loads(out.read_text())
    assert result["store_items"] == result["encoded"] == 2000 and result["reused"] == 0
    assert result["encode_items_per_s"] > 0 and result["index_peak_rss"] > 0


def test_ctr_scaling_benchmark_smoke(tmp_path):
    run(sys.executable, "benchmarks/bench_ctr_scaling.py", "--smoke", "--sizes", "1", "4",
        "--json", str(tmp_path / "r.json"))
    sizes = json.loads((tmp_path / "r.json").read_text())["sizes"]
    assert sizes["4"]["events"] == 4 * sizes["1"]["events"]


def test_ctr_quality_benchmark_summarises_a_trained_run(ml100k, tmp_path):
    from tests.conftest import write_slice

    folder = write_slice(ml100k, tmp_path / "slice", n_users=60)
    out = tmp_path / "run"
    data = ["--set", "data.dataset=files", "--set", f"data.path={folder}"]
    run(sys.executable, "-m", "mimrec", "data", "configs/movielens.toml", "--out", str(out), *data)
    run(sys.executable, "-m", "mimrec", "train", "configs/movielens.toml", "--out", str(out), *data,
        "--set", "ctr.variants=['din']", "--set", "ctr.train.seeds=[0, 1]",
        "--set", "ctr.train.max_epochs=1", "--set", "ctr.train.threads=1")
    run(sys.executable, "benchmarks/bench_ctr_quality.py", "--run", str(out), "--reuse",
        "--seeds", "0", "1", "--fuxictr-configs", "--content", "--json", str(tmp_path / "q.json"))
    din = json.loads((tmp_path / "q.json").read_text())["models"]["mimrec din"]
    assert len(din["auc"]["values"]) == 2 and 0 < din["auc"]["mean"] < 1
    # the peers' side: the content file FuxiCTR reads, and the paired comparison with a peer
    quality = load_script("bench_ctr_quality")
    ids = np.array(["m1", "m2", "m3"])
    vectors = np.eye(3, 4, dtype=np.float32)
    write_version(out / "index" / "csft", ids, vectors, StoreInfo("csft", "h", 4))
    npz = np.load(quality.export_content(out, "csft", tmp_path / "q"))
    assert npz["key"].dtype.kind == "U" and list(npz["key"]) == list(ids)  # no pickled objects
    np.testing.assert_array_equal(npz["value"], vectors)
    din_preds = quality.mimrec_predictions(out, "din", [0, 1])
    assert set(din_preds) == {0, 1}
    shuffled = {s: np.random.default_rng(s).permutation(p) for s, p in din_preds.items()}
    table = quality.versus_peers(out, din_preds, {"noise": shuffled, "itself": din_preds})
    assert table["itself"]["all"]["delta_auc"] == 0.0  # a model against itself: no difference
    assert table["itself"]["all"]["delta_auc_interval"] == [0.0, 0.0]
    lo, hi = table["noise"]["all"]["delta_auc_interval"]
    assert lo <= table["noise"]["all"]["delta_auc"] <= hi and hi > 0  # beats shuffled scores
    names = read_samples(out / "data" / "samples").bucket_names  # a small slice merges some
    assert list(table["noise"]["buckets"]) == [str(n) for n in names] and len(names) >= 2


def load_script(name: str):
    """A benchmark script as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path("benchmarks") / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_request_guards_benchmark_smoke():
    r = run(sys.executable, "benchmarks/bench_request_guards.py", "--requests", "200",
            "--repeats", "1")
    assert "guarded" in r.stdout and "of a 3 ms forward pass" in r.stdout


def test_scale_benchmark_smoke(tmp_path):
    out = tmp_path / "scale.json"
    r = run(sys.executable, "benchmarks/bench_scale.py", "--events", "5000", "--json", str(out),
            "--work", str(tmp_path / "work"))
    result = json.loads(out.read_text())
    assert result["events"] == 5000 and result["synthetic"] is True
    assert result["train_samples"] == 4000  # the train split: 80% of the events
    for key in ("data_seconds", "data_peak_rss", "train_samples_per_s", "train_peak_rss"):
        assert result[key] > 0
    assert "DIN epoch (sparse updates)" in r.stdout and result["sparse_updates"] is True
    assert not (tmp_path / "work" / "synthetic-5000").exists()  # removed without --keep
    r = run(sys.executable, "benchmarks/bench_scale.py", "--events", "5000", "--json", str(out),
            "--work", str(tmp_path / "work"), "--compare-dense", "--max-steps", "2",
            "--batch-size", "64")
    result = json.loads(out.read_text())
    assert result["train_samples"] == 128 and result["partial_epoch"] is True
    assert "DIN partial epoch (sparse updates)" in r.stdout and "sparse / dense x" in r.stdout
    assert result["sparse_vs_dense"] == pytest.approx(
        result["train_samples_per_s"] / result["dense_train_samples_per_s"])
    r = run(sys.executable, "benchmarks/bench_scale.py", "--events", "5000", "--json", str(out),
            "--work", str(tmp_path / "work"), "--max-steps", "2", "--batch-size", "64",
            "--ranks", "2", "--ema")
    result = json.loads(out.read_text())
    assert result["ranks"] == 2 and result["weight_average"] is True
    assert result["train_samples"] == 128  # the global batches' rows, over both ranks
    assert "(sparse updates, 2 ranks, weight average)" in r.stdout
    # one process on the same artifact in the same run is the reference of both ratios
    assert result["strong_scaling"] == pytest.approx(
        result["train_samples_per_s"] / result["one_rank_samples_per_s"])
    assert result["weak_batch_size"] == 128 and result["weak_train_samples"] == 128
    assert result["weak_scaling"] == pytest.approx(
        result["weak_samples_per_s"] / result["one_rank_samples_per_s"])
    assert "2 ranks / 1 rank (" in r.stdout and "64 rows a rank (global 128" in r.stdout
    # the ceiling: 2 processes side by side, each on one shard at 32 rows, no communication
    assert len(result["apart_samples_per_s_each"]) == 2
    assert result["apart_scaling"] == pytest.approx(
        result["apart_samples_per_s"] / result["one_rank_samples_per_s"])
    assert result["apart_samples_per_s"] <= sum(result["apart_samples_per_s_each"]) * 1.0001
    assert result["reduce_ms_per_step"] > 0  # the ranks' gradient exchange, timed
    assert "2 processes apart (batch 32 each" in r.stdout
    # --repeats: every size trained again in turn; the median rate is the size's rate
    r = run(sys.executable, "benchmarks/bench_scale.py", "--events", "5000", "6000", "--json",
            str(out), "--work", str(tmp_path / "work"), "--max-steps", "2", "--batch-size", "64",
            "--repeats", "3")
    sizes = json.loads(out.read_text())["sizes"]
    for size in sizes:
        runs = size["train_samples_per_s_runs"]
        assert len(runs) == 3 and size["train_samples_per_s"] == sorted(runs)[1]
    assert sizes[1]["train_rate_ratio_vs_first"] == pytest.approx(
        sizes[1]["train_samples_per_s"] / sizes[0]["train_samples_per_s"])
    assert r.stdout.count("training run 3 of 3") == 2 and "(median of " in r.stdout
    assert not (tmp_path / "work" / "synthetic-6000").exists()  # removed at the end
    # --users / --items: one catalogue for every size
    run(sys.executable, "benchmarks/bench_scale.py", "--events", "5000", "8000", "--json",
        str(out), "--work", str(tmp_path / "work"), "--max-steps", "1", "--batch-size", "64",
        "--users", "70", "--items", "90")
    sizes = json.loads(out.read_text())["sizes"]
    assert [(s["users"], s["items"]) for s in sizes] == [(70, 90), (70, 90)]


def test_make_bench_keeps_the_sections_measured_by_hand(tmp_path, monkeypatch):
    """RESULTS.md is rewritten by `make bench`; sections it does not write (measurements made
    by hand) stay, each after the section it followed, and generated ones are replaced."""
    monkeypatch.syspath_prepend("benchmarks")  # write_results imports its sibling module
    wr = load_script("write_results")
    res = tmp_path / "run" / "results"
    res.mkdir(parents=True)
    (res / "text_encoding.txt").write_text("ratio ours/theirs : 1.50\n")
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmarks\n\nold preamble\n\n## Summary\n\nold summary\n\n"
                   f"## {wr.QUALITY_TITLE}\n\nold quality\n\n"
                   "## 1b. By hand, after quality\n\nkept 1\n\n"
                   "## 3. Text encoding\n\nold encoding numbers\n\n"
                   "### 3b. By hand, after encoding\n\nkept 3\n\n"
                   "## 7. Scale: synthetic 1M / 10M events, data stage and one DIN epoch\n\n"
                   "old scale\n\n## 7b. By hand, after a section not run this time\n\nkept 7\n\n"
                   "## Commands and wall times\n\nold commands\n")
    log = {"text_encoding": {"command": "enc", "seconds": 1.0}}
    wr.write_results(tmp_path / "run", log, ["- env"], out)
    text = out.read_text()
    for old in ("old preamble", "old summary", "old quality", "old encoding numbers", "old scale",
                "old commands"):
        assert old not in text
    titles = [line for line in text.splitlines() if line.startswith("##")]
    assert titles.index("## 1b. By hand, after quality") == titles.index(
        f"## {wr.QUALITY_TITLE}") + 1
    assert titles.index("### 3b. By hand, after encoding") == titles.index(
        "## 3. Text encoding") + 1
    assert titles.index("## 7b. By hand, after a section not run this time") == titles.index(
        "## Commands and wall times") - 1
    assert "1.50x" in text and all(f"kept {k}" in text for k in (1, 3, 7))
    wr.write_results(tmp_path / "run", log, ["- env"], out)  # again: nothing doubles
    assert out.read_text().count("kept 3") == 1


def test_quality_sections_give_each_protocol_its_intervals(tmp_path, monkeypatch):
    """A protocol's quality section: the models, the oracle where known, the bucket sizes and
    CiUBM minus each peer with its interval, saying which differences the data resolves."""
    monkeypatch.syspath_prepend("benchmarks")
    wr = load_script("write_results")
    res = tmp_path / "results"
    res.mkdir()
    model = {m: {"mean": 0.7, "std": 0.001} for m in ("auc", "gauc", "logloss")}
    model.update({f"auc_{b}": {"mean": 0.7, "n": n} for b, n in zip(
        wr.BUCKETS, (4807, 290, 18486, 1372), strict=True)})

    def delta(lo: float, hi: float, n: int | None = None) -> dict:
        d = {"delta_auc": (lo + hi) / 2, "delta_auc_interval": [lo, hi],
             "delta_gauc": 0.0, "delta_gauc_interval": [-0.001, 0.001]}
        return d if n is None else {**d, "n": n}

    q = {"seeds": "0 1 2", "models": {"mimrec din": model, "mimrec ciubm": {
        **model, "oracle_gap_closed_vs_mimrec_din": 0.25}},
        "oracle": {"auc": 0.84, "gauc": 0.83, "logloss": 0.48,
                   "buckets": {b: {"auc": 0.85} for b in wr.BUCKETS}},
        "ciubm_versus": {"fuxictr din (tuned)": {
            "all": delta(0.0014, 0.0060),
            "buckets": {"cold": delta(-0.002, 0.004, 4807), "tail": None}}}}
    (res / "quality_p4.json").write_text(json.dumps(q))
    lines = wr.quality_section(res, "quality_p4")
    text = "\n".join(lines)
    assert "| oracle (true click probability) | 0.8400 |" in text
    assert "cold 4807" in text and "mimrec ciubm +25.0%" in text
    assert ("| fuxictr din (tuned) | all | +0.0037 [+0.0014, +0.0060] | +0.0000 [-0.0010, +0.0010] "
            "| yes |") in text
    row = next(line for line in lines if "cold (4,807)" in line)
    assert row.endswith("| no (the interval holds 0) |")
    assert wr.quality_section(res, "quality_cold_v2") == ["(not run)"]
