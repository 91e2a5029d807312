"""The Representation Center at catalogue scale: build, open, lookup, 1-item upserts, disk.

On a synthetic store (``--items`` ids x ``--dim`` random normal float32 vectors; not real item
embeddings, which changes nothing the store does), in one run:

- build: ``write_version`` of the whole table (seconds) and ``open_s``: reading the latest
  version into a :class:`RepresentationCenter` (seconds);
- lookup of ``--batch`` random ids -> (B, D): ours vs numpy on the same arrays (``searchsorted``
  over the sorted ids + fancy indexing; ``lookup_vs_numpy``), and vs plain fancy indexing with
  the rows already known (``lookup_vs_numpy_rows``: no id resolution at all); best of rounds;
- ``--adds`` single-item upserts (alternately a new id and a replaced one), each timed until
  it returns (acknowledged: its ``merge_insert`` committed), back to back; retention with the
  defaults (compaction + keep 10 versions every 20 commits) runs in the store's background
  thread, so an upsert that arrives while a tidy holds the lock waits for it:
  ``upsert_p50_ms`` / ``upsert_p99_ms``; ``tidies`` counts the background tidies
  (``--inline-tidy``: the tidy inside the upsert that makes it due, as before, for comparison);
- disk: ``disk_bytes_after_adds`` (every file of the table folder after the adds) against
  ``table_bytes`` (the bytes LanceDB reports for the latest version alone);
  ``disk_vs_table`` is their ratio (target <= 1.2).

Targets at 1M x 128 (issue 16): upsert p50 <= 50 ms, p99 <= 200 ms; lookup >= 0.5x numpy;
disk <= 1.2x the table. Prints and writes JSON; never asserts.

Usage: .venv/bin/python benchmarks/bench_store_scale.py --items 1000000 [--dim 128]
       [--adds 1000] [--batch 1024] [--dir FOLDER] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mimrec.store.center import (
    RepresentationCenter,
    StoreInfo,
    open_table,
    table_path,
    upsert,
    write_version,
)
from mimrec.store.retention import Maintainer, Retention, folder_bytes


def best_ms(fn: Callable[[], object], rounds: int, calls: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def lookups(center: RepresentationCenter, batch: int, rounds: int) -> dict:
    rng = np.random.default_rng(1)
    ids = center.ids[rng.integers(0, len(center), batch)]
    order = np.argsort(center.ids, kind="stable")
    sorted_ids, vectors = center.ids[order], center.vectors
    rows = center.rows(ids)
    np.testing.assert_array_equal(center.lookup(ids), vectors[rows])
    ours = best_ms(lambda: center.lookup(ids), rounds, 20)
    ref = best_ms(lambda: vectors[order[np.searchsorted(sorted_ids, ids)]], rounds, 20)
    fancy = best_ms(lambda: vectors[rows], rounds, 20)
    return {"lookup_ms": ours, "numpy_ms": ref, "numpy_rows_ms": fancy,
            "lookup_vs_numpy": ref / ours, "lookup_vs_numpy_rows": fancy / ours}


def adds(folder: Path, n: int, items: int, dim: int, retention: Retention) -> np.ndarray:
    """Seconds of ``n`` single-item upserts, alternately a new id and a replaced one."""
    rng = np.random.default_rng(2)
    times = np.empty(n)
    for k in range(n):
        key = f"new-{k}" if k % 2 == 0 else f"item-{rng.integers(0, items)}"
        vector = rng.normal(size=(1, dim)).astype(np.float32)
        start = time.perf_counter()
        upsert(folder, [key], vector, retention=retention)
        times[k] = time.perf_counter() - start
        if (k + 1) % max(1, n // 10) == 0:
            print(f"  {k + 1:>5} upserts, last p50 {np.median(times[: k + 1]) * 1e3:.1f} ms",
                  flush=True)
    return times


def run(args: argparse.Namespace, root: Path) -> dict:
    folder = root / "store"
    rng = np.random.default_rng(0)
    ids = np.array([f"item-{i}" for i in range(args.items)])
    vectors = rng.normal(size=(args.items, args.dim)).astype(np.float32)
    start = time.perf_counter()
    write_version(folder, ids, vectors, StoreInfo("synthetic", "-", args.dim))
    build_s = time.perf_counter() - start
    del vectors
    start = time.perf_counter()
    center = RepresentationCenter(folder)
    open_s = time.perf_counter() - start
    print(f"store: {args.items:,} items x {args.dim} (synthetic vectors), built in {build_s:.1f} s"
          f", opened in {open_s:.2f} s", flush=True)
    look = lookups(center, args.batch, args.rounds)
    print(f"  lookup of {args.batch} ids: ours {look['lookup_ms']:.3f} ms, numpy (searchsorted + "
          f"fancy) {look['numpy_ms']:.3f} ms -> {look['lookup_vs_numpy']:.2f}x; numpy fancy with "
          f"known rows {look['numpy_rows_ms']:.3f} ms -> {look['lookup_vs_numpy_rows']:.2f}x",
          flush=True)
    del center
    retention = Retention(background=not args.inline_tidy)
    times = adds(folder, args.adds, args.items, args.dim, retention) * 1e3
    maintainer = Maintainer.of(folder)
    maintainer.wait()  # the last due tidy, before the disk is measured
    disk = folder_bytes(table_path(folder))
    table = open_table(folder).stats()["total_bytes"]
    result = {"items": args.items, "dim": args.dim, "vectors": "synthetic (random normal)",
              "build_s": build_s, "open_s": open_s, "batch": args.batch, **look,
              "adds": args.adds, "tidy": "inline" if args.inline_tidy else "background",
              "upsert_p50_ms": float(np.percentile(times, 50)),
              "upsert_p99_ms": float(np.percentile(times, 99)),
              "upsert_max_ms": float(times.max()), "tidies": maintainer.runs,
              "loadavg_1m": os.getloadavg()[0], "disk_bytes_after_adds": disk,
              "table_bytes": int(table), "disk_vs_table": disk / table}
    print(f"  {args.adds} single upserts: p50 {result['upsert_p50_ms']:.1f} ms, p99 "
          f"{result['upsert_p99_ms']:.1f} ms, max {result['upsert_max_ms']:.1f} ms", flush=True)
    print(f"  disk after the upserts {disk:,} bytes, table {table:,} bytes -> "
          f"{result['disk_vs_table']:.3f}x", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--adds", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--inline-tidy", action="store_true",
                        help="tidy inside the upsert that makes it due (before: the reference)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = parser.parse_args()
    if args.smoke:
        args.items, args.dim, args.adds, args.batch, args.rounds = 2000, 16, 30, 64, 2
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        result = run(args, Path(tmp))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
