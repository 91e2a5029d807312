"""The serving load benchmark runs end to end on a tiny bundle (no timing is asserted)."""

import json
import subprocess
import sys

import numpy as np
import pytest


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
    memory = result["results"]["mimrec"]["memory"]  # every process of the service, by role
    roles = [m["role"] for m in memory["processes"]]
    assert roles[0] == "supervisor" and all(m["rss_mib"] > 0 for m in memory["processes"])
    assert memory["per_worker_mib"] == pytest.approx(memory["total_rss_mib"])  # one worker
    assert "service RSS at the end: supervisor" in r.stdout


def test_visibility_is_read_from_each_workers_next_score_after_an_add():
    sys.path.insert(0, "benchmarks")
    from bench_serve import visibility

    # (sent, done, worker, store version) of score answers; adds acknowledged at t=1.0 (v5)
    # and t=2.0 (v6)
    trace = [(0.5, 0.6, "a", 4), (1.01, 1.02, "a", 5), (1.1, 1.2, "b", 5),
             (2.05, 2.1, "a", 5), (2.2, 2.3, "a", 6), (2.5, 2.6, "b", 6)]
    seen = visibility([(1.0, 5), (2.0, 6)], trace)
    # a at v5: 20 ms; b at v5: 200 ms; a's first answer after the second add was stale (v5),
    # its next one current at 2.3; b at v6: 600 ms
    np.testing.assert_allclose(sorted(seen.pop("visible_ms")), [20, 200, 300, 600])
    assert seen.pop("traffic_gap_max_ms") == pytest.approx(1400)  # b: nothing from 1.1 to 2.5
    assert seen == {"stale_scores": 1, "unseen": 0, "scoring_workers": 2}
    late = visibility([(3.0, 7)], trace)  # nothing was sent after it
    assert late["unseen"] == 2 and late["visible_ms"] == []
