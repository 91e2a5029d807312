"""Streaming evaluation: time and peak RSS of the CTR metrics of one large split, in memory
(every column loaded, ``ctr_metrics``) and streaming (memory-mapped ``.npy`` columns,
``stream_ctr_metrics`` with ``--chunk`` rows at a time), and whether they agree.

The split is synthetic (and said so): ``--rows`` rows, ``rows / 10`` users, labels 0/1, float32
probabilities that lean towards the label, four buckets. Each mode runs in its own process;
peak RSS is ``getrusage`` of that process minus its RSS after the imports. Prints and writes
JSON; never asserts.

Usage: python benchmarks/bench_stream_eval.py --rows 10000000 [--chunk 1000000]
       [--work runs/bench_stream_eval] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = ("user", "label", "prob", "bucket")


def write_split(work: Path, rows: int, seed: int = 0) -> None:
    """The synthetic split as one ``.npy`` file per column."""
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < 0.3).astype(np.float32)
    np.save(work / "label.npy", label)
    np.save(work / "prob.npy", np.clip(rng.normal(0.3 + 0.2 * label, 0.2), 0.001, 0.999)
            .astype(np.float32))
    del label
    np.save(work / "user.npy", rng.integers(0, max(1, rows // 10), rows))
    np.save(work / "bucket.npy", rng.integers(0, 4, rows).astype(np.int8))


def measure(work: Path, mode: str, chunk: int) -> dict:
    """One mode, in this process: metrics, seconds, peak RSS above the post-import RSS."""
    from mimrec.eval.metrics import ctr_metrics
    from mimrec.eval.streaming import stream_ctr_metrics

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if mode == "memory":
        cols = {k: np.load(work / f"{k}.npy") for k in COLUMNS}
        metrics = ctr_metrics(cols["user"], cols["label"], cols["prob"], cols["bucket"])
    else:
        cols = {k: np.load(work / f"{k}.npy", mmap_mode="r") for k in COLUMNS}
        metrics = stream_ctr_metrics(cols["user"], cols["label"], cols["prob"], cols["bucket"],
                                     chunk_rows=chunk)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "seconds": seconds, "peak_rss_above_imports": peak - base,
            "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_stream_eval"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--mode", choices=("memory", "stream"), default=None,
                        help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.work, args.mode, args.chunk)))
        return
    write_split(args.work, args.rows)
    results = {"rows": args.rows, "chunk_rows": args.chunk, "synthetic": True}
    for mode in ("stream", "memory"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--work", str(args.work),
                              "--chunk", str(args.chunk)], check=True, capture_output=True,
                             text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:>6}: {r['seconds']:.1f} s, peak RSS +{r['peak_rss_above_imports'] / 2**20:.0f}"
              f" MiB, AUC {r['metrics']['auc']:.6f}, gAUC {r['metrics']['gauc']:.6f}")
    stream, memory = results["stream"]["metrics"], results["memory"]["metrics"]
    results["max_abs_difference"] = max(
        abs(stream[k] - memory[k]) for k in ("auc", "gauc", "logloss"))
    print(f"largest |stream - memory| of AUC, gAUC, LogLoss: {results['max_abs_difference']:.1e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
