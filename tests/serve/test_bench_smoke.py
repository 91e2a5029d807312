"""The serving load benchmark runs end to end on a tiny bundle (no timing is asserted)."""

import json
import subprocess
import sys


def test_serve_benchmark_smoke(run_copy, tmp_path):
    out = tmp_path / "serve.json"
    r = subprocess.run([sys.executable, "benchmarks/bench_serve.py", "--run", str(run_copy),
                        "--seconds", "1", "--warmup", "0.2", "--clients", "2",
                        "--candidates", "20", "--history", "10", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"trivial", "mimrec"}
    assert result["results"]["mimrec"]["requests"] > 0 and result["results"]["mimrec"]["errors"] == 0
    assert "mimrec / trivial" in r.stdout
