"""The serving load benchmark runs end to end on a tiny bundle (no timing is asserted)."""

import json
import subprocess
import sys


def test_serve_benchmark_smoke(run_copy, tmp_path):
    out = tmp_path / "serve.json"
    r = subprocess.run([sys.executable, "benchmarks/bench_serve.py", "--run", str(run_copy),
                        "--seconds", "1", "--warmup", "0.2", "--clients", "2",
                        "--candidates", "20", "--history", "10", "--rate", "20", "--workers", "1",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"trivial", "mimrec"}
    for phase in ("capacity", "at_rate"):
        mimrec = result["results"]["mimrec"][phase]
        assert mimrec["requests"] > 0 and mimrec["errors"] == 0
    assert "mimrec / trivial" in r.stdout
