"""Representation Center batched lookups against plain numpy fancy indexing on the same table.

Two operations, each timed on the same store and the same random requests:

- ``lookup(ids)``: a batch of item ids (the strings the store holds) -> (B, D) vectors. Reference:
  numpy alone on the store's own arrays: ``np.searchsorted`` over the sorted ids, then
  ``vectors[rows]``.
- ``gather(rows)``: a padded (B, L) batch of row numbers -> (B, L, D). Reference:
  ``vectors[rows]`` in numpy.

The store is a synthetic one (``--items`` random vectors, written with ``write_version``) and,
when ``--run`` has one, the run's C-SFT store. Each operation runs ``--repeats`` rounds
alternating ours and the reference; the best round of each counts. Prints requests/s and the
ratio ours / numpy (target >= 0.8); never asserts.

Usage: .venv/bin/python benchmarks/bench_store_lookup.py [--run RUN] [--items 100000]
       [--dim 128] [--batch 1024] [--length 50] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mimrec.store.center import RepresentationCenter, StoreInfo, write_version


def best_seconds(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of the fastest of ``calls`` calls."""
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def compare(name: str, ours: Callable[[], object], ref: Callable[[], object], repeats: int,
            calls: int) -> dict:
    """Alternate ours / reference ``repeats`` times; the best call of each."""
    t_ours, t_ref = float("inf"), float("inf")
    for _ in range(repeats):
        t_ours = min(t_ours, best_seconds(ours, calls))
        t_ref = min(t_ref, best_seconds(ref, calls))
    ratio = t_ref / t_ours
    print(f"  {name:<34} ours {t_ours * 1e3:8.3f} ms   numpy {t_ref * 1e3:8.3f} ms   "
          f"ratio ours/numpy {ratio:5.2f}")
    return {"ours_ms": t_ours * 1e3, "numpy_ms": t_ref * 1e3, "ratio": ratio}


def bench_store(center: RepresentationCenter, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    n = len(center)
    ids = center.ids[rng.integers(0, n, args.batch)]  # (B,) strings
    rows = rng.integers(0, n, (args.batch, args.length))  # (B, L)
    vectors, sorted_ids = center.vectors, np.sort(center.ids)
    order = np.argsort(center.ids)

    def ref_lookup() -> np.ndarray:
        return vectors[order[np.searchsorted(sorted_ids, ids)]]

    np.testing.assert_array_equal(center.lookup(ids), ref_lookup())
    np.testing.assert_array_equal(center.gather(rows).numpy(), vectors[rows])
    print(f"store: {n:,} items x {center.dim}, batch {args.batch}, history length {args.length}")
    return {
        "items": n, "dim": center.dim,
        "lookup": compare(f"lookup {args.batch} ids", lambda: center.lookup(ids), ref_lookup,
                          args.repeats, args.calls),
        "gather": compare(f"gather ({args.batch}, {args.length}) rows",
                          lambda: center.gather(rows), lambda: vectors[rows], args.repeats,
                          args.calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="also the run's C-SFT store")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="1,000 items, few calls")
    args = parser.parse_args()
    if args.smoke:
        args.items, args.repeats, args.calls, args.batch = 1000, 1, 2, 64
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(1)
        ids = np.array([str(i) for i in rng.permutation(args.items) + 1])
        vectors = rng.normal(size=(args.items, args.dim)).astype(np.float32)
        write_version(Path(tmp) / "store", ids, vectors, StoreInfo("synthetic", "-", args.dim))
        results["synthetic"] = bench_store(RepresentationCenter(Path(tmp) / "store"), args)
    store = args.run / "index" / "csft" if args.run else None
    if store is not None and store.is_dir():
        results["run_csft"] = bench_store(RepresentationCenter(store), args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
