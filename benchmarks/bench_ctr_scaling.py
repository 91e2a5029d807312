"""Scaling of CTR training: one epoch of mimrec's DIN on MovieLens-100K replicated 1x, 4x and 16x.

Users are copied under new ids with their side features (synthetic replication, said so: the
catalogue and the per-user histories stay the same, the event count grows k-fold). Each size
builds its P1 samples, then trains the pipeline config's DIN for one epoch on the train split
(same batch size, same threads; 5 untimed warm-up batches first). Prints seconds, train
samples/s and the time ratio against 1x: linear cost means ratios near 4 and 16. Never asserts.

Usage: .venv/bin/python benchmarks/bench_ctr_scaling.py [--threads 1] [--batch-size 1024]
       [--sizes 1 4 16] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from mimrec.config import load_config
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.train import Batchable, batchable, seed_everything, train_epoch
from mimrec.ctr.variants import preset
from mimrec.data.movielens import load_movielens
from mimrec.data.samples import TRAIN, build_samples
from mimrec.data.tables import Dataset


def replicated(ml: Dataset, k: int, limit: int | None) -> Dataset:
    """``k`` copies of the interactions and users, each copy's users renamed."""
    inter = ml.interactions if limit is None else ml.interactions.iloc[:limit]
    users = ml.users[ml.users["user_id"].isin(inter["user_id"])]
    rename = [lambda s, r=r: s + f"_{r}" for r in range(k)]
    return Dataset(f"ml-100k-x{k}",
                   pd.concat([inter.assign(user_id=f(inter["user_id"])) for f in rename],
                             ignore_index=True),
                   ml.items,
                   pd.concat([users.assign(user_id=f(users["user_id"])) for f in rename],
                             ignore_index=True))


def one_epoch(ds: Dataset, cfg, batch_size: int, smoke: bool) -> dict:
    """Sample building and one DIN training epoch on the train split of ``ds``."""
    start = time.perf_counter()
    samples = build_samples(ds, cfg.data)
    build_seconds = time.perf_counter() - start
    tables = build_feature_tables(ds.items, ds.users, len(samples.user_ids),
                                  cfg.data.item_features, cfg.data.user_features)
    model_cfg = cfg.ctr.model
    if smoke:
        model_cfg = replace(model_cfg, embedding_dim=4, attention_units=(8,), mlp_units=(8,))
    seed_everything(0, cfg.ctr.train.deterministic)
    model = CiUBM(model_cfg, preset(cfg.ctr, "din"), tables)
    train = batchable(samples, TRAIN)
    train_cfg = replace(cfg.ctr.train, batch_size=batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    warm = Batchable(*(t[: batch_size * 5] for t in (train.user, train.item, train.history,
                                                     train.label)))
    train_epoch(model, warm, opt, train_cfg, None, 0)  # warm-up (allocator, kernels): untimed
    start = time.perf_counter()
    train_epoch(model, train, opt, train_cfg, None, 1)
    seconds = time.perf_counter() - start
    return {"events": len(ds.interactions), "train_samples": len(train),
            "build_seconds": build_seconds, "train_seconds": seconds,
            "train_samples_per_second": len(train) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/movielens.toml"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="2,000 events per copy, tiny DIN")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [])
    ml = load_movielens(cfg.data.positive_rating, ())
    results, base = {"threads": args.threads, "batch_size": args.batch_size, "sizes": {}}, None
    for k in args.sizes:
        r = one_epoch(replicated(ml, k, 2000 if args.smoke else None), cfg, args.batch_size,
                      args.smoke)
        base = base or r["train_seconds"]
        r["time_ratio"] = r["train_seconds"] / base
        results["sizes"][str(k)] = r
        print(f"{k:>2}x  {r['events']:>9,} events  build {r['build_seconds']:6.2f} s  "
              f"train epoch {r['train_seconds']:7.2f} s  {r['train_samples_per_second']:>8,.0f} "
              f"samples/s  time ratio vs 1x {r['time_ratio']:5.1f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
