"""Scaling of the P1 sample builder: MovieLens-100K replicated 1x, 4x and 16x (users copied under
new ids: synthetic replication, said so), events/s at each size and the time ratio against 1x.
Linear cost means the 4x and 16x time ratios stay near 4 and 16. Best of ``--repeats`` builds
per size. Prints, never asserts.

Usage: python benchmarks/bench_sample_builder.py [--smoke]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from mimrec.data.config import DataConfig
from mimrec.data.movielens import load_movielens
from mimrec.data.samples import build_samples
from mimrec.data.tables import Dataset


def replicated(ml: Dataset, k: int, limit: int | None) -> Dataset:
    """``k`` copies of the interactions, each copy's users renamed."""
    inter = ml.interactions if limit is None else ml.interactions.iloc[:limit]
    copies = [inter.assign(user_id=inter["user_id"] + f"_{r}") for r in range(k)]
    return Dataset(f"ml-100k-x{k}", pd.concat(copies, ignore_index=True), ml.items, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2,000 events per copy")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many builds")
    args = parser.parse_args()
    ml = load_movielens()
    base = None
    for k in (1, 4, 16):
        ds = replicated(ml, k, 2000 if args.smoke else None)
        seconds = float("inf")
        for _ in range(1 if args.smoke else args.repeats):
            start = time.perf_counter()
            build_samples(ds, DataConfig())
            seconds = min(seconds, time.perf_counter() - start)
        base = base or seconds
        n = len(ds.interactions)
        print(f"{k:>2}x  {n:>9,} events  {seconds:6.2f} s  {n / seconds:>10,.0f} events/s  "
              f"time ratio vs 1x {seconds / base:5.1f}")


if __name__ == "__main__":
    main()
