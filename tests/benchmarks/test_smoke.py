"""The benchmark scripts run on tiny inputs (no timing is asserted anywhere)."""

import subprocess
import sys


def test_sample_builder_benchmark_smoke():
    r = subprocess.run([sys.executable, "benchmarks/bench_sample_builder.py", "--smoke"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "events/s" in line]
    assert len(lines) == 3 and "16x" in lines[-1]
