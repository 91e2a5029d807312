"""CTR training and prediction throughput: mimrec DIN and CiUBM against FuxiCTR 2.3.10's DIN.

Same P1 data (a mimrec run folder's data artifact), same batch size, same torch threads. mimrec's
models are the pipeline config's (``configs/movielens.toml``: embedding 16, attention (64, 32),
tower (256, 128), embedding L2, deterministic kernels); CiUBM reads the run's C-SFT vectors
(``RUN/index/csft``; random vectors of the same size when the run has no index, said so).
FuxiCTR's DIN runs in its own environment (``benchmarks/fuxictr_p1.py``, ``.venv-fuxictr``) in
two configs: ``mimrec_shapes`` (its DIN with mimrec's sizes: the like-for-like comparison) and
``tuned`` (the configuration tuned on valid for P1, ``fuxictr_p1.TUNED``: embedding 16, tower
3 x 500, Dice attention [64], batch norm, dropout 0.2, embedding regularizer 0.1).

Train samples/s = samples of the first ``--batches`` batches of a shuffled epoch / wall seconds,
data loading included (mimrec: tensor indexing; FuxiCTR: its LongCTR loader). Predict samples/s
over the test split. The two libraries alternate ``--repeats`` times and each keeps its best, so
background load hits both alike. Prints rates and ratios (mimrec / FuxiCTR); never asserts.

Usage: .venv/bin/python benchmarks/bench_ctr_throughput.py --run RUN [--threads 1]
       [--batch-size 1024] [--batches 40] [--repeats 2] [--json OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mimrec.config import load_config
from mimrec.ctr.blocks import reads_content
from mimrec.ctr.features import feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.stage import content_table
from mimrec.ctr.train import Batchable, batchable, predict, seed_everything, train_epoch
from mimrec.ctr.variants import preset
from mimrec.data.samples import TEST, TRAIN
from mimrec.data.stage import read_data

FUXICTR_PYTHON = Path(".venv-fuxictr/bin/python")
FUXICTR_CONFIGS = ("mimrec_shapes", "tuned")


def first_batches(data: Batchable, n: int, seed: int = 0) -> Batchable:
    """``n`` random samples of a split (the first batches of a shuffled epoch)."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return Batchable(data.user[idx], data.item[idx], data.history[idx], data.label[idx])


def mimrec_rates(run: Path, config: Path, variant: str, batch_size: int, batches: int,
                 smoke: bool) -> dict:
    """Train and predict samples/s of one mimrec model on the run's P1 data."""
    cfg = load_config(config, [])
    data = read_data(run / "data")
    tables = feature_tables(data, cfg.data)
    model_cfg, spec = cfg.ctr.model, preset(cfg.ctr, variant)  # trained from scratch here
    if smoke:
        model_cfg = type(model_cfg)(embedding_dim=4, attention_units=(8,), mlp_units=(8,),
                                    ciubm_modules=model_cfg.ciubm_modules)
    content, source = None, None
    if reads_content(spec):
        store = run / "index" / spec.source
        if store.is_dir():
            content, source = content_table(store, data.items)[0], str(store)
        else:
            content, source = torch.randn(len(data.items) + 1, 128), "random (no index in run)"
    seed_everything(0, cfg.ctr.train.deterministic)
    model = CiUBM(model_cfg, spec, tables, content)
    train = first_batches(batchable(data.samples, TRAIN), batch_size * batches)
    test = batchable(data.samples, TEST)
    train_cfg = type(cfg.ctr.train)(**{**cfg.ctr.train.__dict__, "batch_size": batch_size})
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    start = time.perf_counter()
    train_epoch(model, train, opt, train_cfg, None, 1)
    train_rate = len(train) / (time.perf_counter() - start)
    start = time.perf_counter()
    predict(model, test, batch_size)
    predict_rate = len(test) / (time.perf_counter() - start)
    return {"train_samples_per_second": train_rate, "predict_samples_per_second": predict_rate,
            "train_samples": len(train), "content": source}


def fuxictr_rates(run: Path, work: Path, config: str, args: argparse.Namespace) -> dict | None:
    """FuxiCTR DIN's rates, measured by ``fuxictr_p1.py`` in its own environment."""
    if not FUXICTR_PYTHON.exists():
        return None
    out = work / f"fuxictr-{config}.json"
    cmd = [str(FUXICTR_PYTHON), "benchmarks/fuxictr_p1.py", str(run / "data"),
           "--work", str(work / "fuxictr"), "--out", str(out), "--config", config, "--reuse",
           "--no-quality", "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--batches", str(args.batches), "--seeds", "0"] + (["--smoke"] if args.smoke else [])
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"FuxiCTR run failed:\n{r.stderr[-3000:]}")
    return json.loads(out.read_text())["throughput"]


def best(results: dict, key: str, rate: dict | None) -> None:
    if rate is None:
        return
    for k in ("train_samples_per_second", "predict_samples_per_second"):
        results.setdefault(key, {}).setdefault(k, 0.0)
        results[key][k] = max(results[key][k], rate[k])
    results[key]["runs"] = results[key].get("runs", 0) + 1


def report(results: dict) -> None:
    print(f"{'model':<32}{'train samples/s':>18}{'predict samples/s':>20}")
    for key, r in results.items():
        if isinstance(r, dict) and "train_samples_per_second" in r:
            print(f"{key:<32}{r['train_samples_per_second']:>18,.0f}"
                  f"{r['predict_samples_per_second']:>20,.0f}")
    for mine in ("mimrec din", "mimrec ciubm"):
        for ref in (f"fuxictr din ({c})" for c in FUXICTR_CONFIGS):
            if mine in results and ref in results:
                tr = (results[mine]["train_samples_per_second"]
                      / results[ref]["train_samples_per_second"])
                pr = (results[mine]["predict_samples_per_second"]
                      / results[ref]["predict_samples_per_second"])
                results.setdefault("ratios", {})[f"{mine} / {ref}"] = {"train": tr, "predict": pr}
                print(f"ratio {mine} / {ref}: train {tr:.2f}x, predict {pr:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder with data (+ index)")
    parser.add_argument("--config", type=Path, default=Path("configs/movielens.toml"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=40, help="train batches timed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fuxictr", nargs="*", default=list(FUXICTR_CONFIGS),
                        choices=FUXICTR_CONFIGS, help="FuxiCTR configs to measure")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 2 batches, 1 repeat")
    args = parser.parse_args()
    if args.smoke:
        args.batches, args.repeats, args.batch_size = 2, 1, 256
    torch.set_num_threads(args.threads)
    results: dict = {"threads": args.threads, "batch_size": args.batch_size,
                     "batches": args.batches, "repeats": args.repeats}
    if not FUXICTR_PYTHON.exists():
        print("FuxiCTR environment missing (make bench-env): measuring mimrec only")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.run / "bench-throughput" if not args.smoke else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for _ in range(args.repeats):
            for variant in ("din", "ciubm"):
                rate = mimrec_rates(args.run, args.config, variant, args.batch_size,
                                    args.batches, args.smoke)
                results["content"] = rate.pop("content") or results.get("content")
                best(results, f"mimrec {variant}", rate)
            for config in args.fuxictr:
                best(results, f"fuxictr din ({config})", fuxictr_rates(args.run, work, config,
                                                                        args))
    print(f"threads {args.threads}, batch {args.batch_size}, {args.batches} train batches, "
          f"best of {args.repeats}; CiUBM content: {results.get('content')}")
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
