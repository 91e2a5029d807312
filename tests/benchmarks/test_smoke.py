"""The benchmark scripts run on tiny inputs (no timing is asserted anywhere)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    out = tmp_path / "fx.json"
    run(str(FUXICTR_PYTHON), "benchmarks/fuxictr_p1.py", str(data_run / "data"),
        "--work", str(tmp_path / "work"), "--out", str(out), "--smoke", "--seeds", "0",
        timeout=600)
    result = json.loads(out.read_text())
    assert 0 <= result["seeds"]["0"]["test"]["auc"] <= 1
    assert result["throughput"]["train_samples_per_second"] > 0


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
        "--seeds", "0", "1", "--fuxictr-configs", "--json", str(tmp_path / "q.json"))
    din = json.loads((tmp_path / "q.json").read_text())["models"]["mimrec din"]
    assert len(din["auc"]["values"]) == 2 and 0 < din["auc"]["mean"] < 1


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
    assert "DIN epoch" in r.stdout
    assert not (tmp_path / "work" / "synthetic-5000").exists()  # removed without --keep
