"""The streaming-evaluation benchmark runs on a tiny split and the two modes agree."""

import json
import subprocess
import sys


def test_stream_eval_benchmark_smoke(tmp_path):
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, "benchmarks/bench_stream_eval.py", "--rows", "20000",
                        "--chunk", "3000", "--work", str(tmp_path / "work"), "--json", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["rows"] == 20000 and result["synthetic"]
    assert result["max_abs_difference"] < 1e-9
    for mode in ("stream", "memory"):
        assert result[mode]["seconds"] > 0 and "peak_rss_above_imports" in result[mode]
        assert sum(b["n"] for b in result[mode]["metrics"]["buckets"].values()) == 20000
