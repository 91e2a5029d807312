"""Scale: the data stage and one DIN epoch on synthetic data of 1M, 10M, 100M events.

For each ``--events`` size: write synthetic tables with ``benchmarks/make_scale_data.py`` (users =
events / 100, items = events / 200 unless ``--users`` / ``--items`` fix them for every size;
synthetic, said so in every table), run ``mimrec data`` on them
in a child process (wall seconds, peak RSS), then train one epoch of DIN (configs/movielens.toml's
model, one torch thread, ``--batch-size``, sparse updates unless ``--dense-updates``; the whole
epoch unless ``--max-steps``) on the train split in another child process (samples/s,
peak RSS: reading the artifact, feature tables, the model and the epoch). Each child measures
its own peak RSS (``getrusage``), so the stages are apart. Prints and writes JSON; never asserts.

``--ranks N`` trains the same epoch data-parallel under ``torchrun --standalone`` with N ranks
(gloo, one thread each, each rank its shard), as ``mimrec train`` does under torchrun; samples/s
counts all ranks' samples, peak RSS is rank 0's. The same run first trains one process (one
thread, ``--batch-size``) on the same artifact as the reference, then N ranks twice: with the
same global batch (``--batch-size`` split over the ranks: strong scaling, the ``train_*`` keys)
and with ``--batch-size`` rows on each rank (a global batch N times larger: weak scaling, the
usual measure of data-parallel throughput, ``weak_*``), and prints both ratios to the
reference. Last, N one-process trainings side by side, each on one rank's shard at the rank's
share of the batch and with no communication (``apart_*``): the most N ranks could reach at the
same global batch on this machine, the ceiling of the strong-scaling ratio. A rank's time in
the step's gradient exchange (``DataParallel.reduce``: packing, the all-gather, waiting for the
slower rank, merging the ranks' rows) is ``reduce_ms_per_step``.
``--repeats K`` trains each size K times, the sizes in turn (1M, 100M, 1M, 100M, ...), after
every size's data stage, and takes each size's median samples/s (every run's rate is in
``train_samples_per_s_runs``): one run's rate moves by several per cent from run to run on this
machine, as much as a ratio's margin, and alternating the sizes spreads a slow spell over them.
``--ema`` also keeps the weight average of ``configs/movielens.toml`` (``ema_decay``), as
``fit`` does; without it the epoch trains the model alone.

Usage: python benchmarks/bench_scale.py --events 1000000 [10000000 ...] --json OUT.json
       [--work runs/scale] [--batch-size 1024] [--keep] [--dense-updates] [--max-steps N]
       [--compare-dense] [--ranks N] [--ema] [--repeats K] [--users U] [--items I]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mimrec.runtime import end_process

CONFIG = Path("configs/movielens.toml")


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_data(data_dir: Path, run: Path) -> dict:
    from mimrec.cli import main

    start = time.perf_counter()
    code = main(["data", str(CONFIG), "--out", str(run), "--set", "data.dataset=files",
                 "--set", f"data.path={data_dir}",
                 "--set", "encoder.use_attributes=false"])  # synthetic items carry no attributes
    if code:
        raise SystemExit(code)
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    return {"data_seconds": time.perf_counter() - start, "data_peak_rss": peak_rss(),
            "data_build_seconds": manifest["metrics"]["build_seconds"]}


def timed_calls(obj: object, name: str) -> list[float]:
    """Wrap ``obj.name`` so that each call adds its wall seconds to the returned one-item
    list."""
    total, method = [0.0], getattr(obj, name)

    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    setattr(obj, name, wrapper)
    return total


def child_train(run: Path, batch_size: int, sparse: bool, max_steps: int,
                ema: bool = False, apart: tuple[int, int] | None = None) -> dict:
    """One DIN epoch (or ``max_steps`` batches) on ``run``'s train split; under torchrun each
    rank on its shard. ``apart`` = (shard, shards): one process on that shard alone, no
    communication (``max_steps`` and the rows drawn are the whole run's, as for the ranks)."""
    import torch
    import torch.distributed as dist

    from mimrec.config import load_config
    from mimrec.ctr.data_parallel import DataParallel
    from mimrec.ctr.features import feature_tables
    from mimrec.ctr.model import CiUBM
    from mimrec.ctr.sparse_updates import make_optimizer
    from mimrec.ctr.train import batchable, seed_everything, train_epoch
    from mimrec.ctr.variants import preset
    from mimrec.ctr.weight_average import WeightAverage
    from mimrec.data.samples import TRAIN
    from mimrec.data.stage import read_data
    from mimrec.runtime import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    if ranks > 1:
        dist.init_process_group("gloo")
    cfg = load_config(CONFIG, [])
    start = time.perf_counter()
    data = read_data(run / "data")
    tables = feature_tables(data, cfg.data)
    train = batchable(data.samples, TRAIN)
    drawn = max_steps * batch_size * (apart[1] if apart else 1)  # global batches' rows
    partial = 0 < drawn < len(train)
    if partial:  # max_steps batches of rows drawn at random: a partial epoch
        gen = torch.Generator().manual_seed(0)  # the same rows on every rank
        keep = torch.randperm(len(train), generator=gen)[:drawn].sort().values
        train = train.subset(keep)
    samples = len(train)
    if ranks > 1:
        train = train.shard(dist.get_rank(), ranks)
    elif apart is not None:
        train = train.shard(*apart)
        samples = len(train)
    del data  # train is a view of the samples' arrays (or a copy of its partial rows)
    load_seconds = time.perf_counter() - start
    seed_everything(0, cfg.ctr.train.deterministic)
    model = CiUBM(cfg.ctr.model, preset(cfg.ctr, "din"), tables)
    train_cfg = replace(cfg.ctr.train, batch_size=batch_size, sparse_updates=sparse)
    opt, sparse_tables = make_optimizer(model, train_cfg.lr, sparse)
    parallel = DataParallel.wrap(model, len(train), sparse_tables)
    average = WeightAverage(model, cfg.ctr.train.ema_decay, sparse_tables) if ema else None
    reduce_seconds = [0.0]
    if parallel is not None:
        reduce_seconds = timed_calls(parallel, "reduce")
        dist.barrier()
    start = time.perf_counter()
    loss = train_epoch(model, train, opt, train_cfg, None, 1, average, parallel)
    if average is not None:
        average.sync()
    seconds = time.perf_counter() - start
    if ranks > 1:
        dist.destroy_process_group()
    return {"train_samples": samples, "train_load_seconds": load_seconds,
            "train_seconds": seconds, "train_samples_per_s": samples / seconds,
            "train_loss": loss, "train_peak_rss": peak_rss(), "batch_size": batch_size,
            "sparse_updates": sparse, "partial_epoch": partial, "ranks": ranks,
            "weight_average": ema,
            "reduce_ms_per_step": 1000 * reduce_seconds[0] / max(1, -(-samples // batch_size))}


def start_child(*args: str, ranks: int = 1) -> subprocess.Popen:
    """Start this script's ``--child`` mode (under torchrun with ``ranks`` > 1)."""
    launch = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={ranks}", "--local-ranks-filter=0"]
    return subprocess.Popen([*launch, __file__, "--child", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen, what: str) -> dict:
    """A started child's JSON result, its last stdout line (rank 0's under torchrun)."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"child {what} failed: {err[-3000:]}")
    line = out.strip().splitlines()[-1]
    return json.loads(line[line.index("{"):])  # torchrun may prefix a rank's lines


def in_child(*args: str, ranks: int = 1) -> dict:
    """Run this script's ``--child`` mode (under torchrun with ``ranks`` > 1) to its end."""
    return child_result(start_child(*args, ranks=ranks), args[0])


def side_by_side(train: tuple[str, ...], ranks: int) -> dict:
    """``ranks`` one-process trainings at once, each on one rank's shard at its share of the
    batch, with no communication: the ceiling of data parallelism at the same global batch.
    Samples/s: all of their samples over the slowest one's seconds."""
    procs = [start_child(*train, str(r), str(ranks)) for r in range(ranks)]
    try:
        runs = [child_result(p, "train") for p in procs]
    finally:  # one failed: the others are not left training on their own
        for p in procs:
            if p.poll() is None:
                p.kill()
    samples = sum(r["train_samples"] for r in runs)
    return {"apart_samples_per_s": samples / max(r["train_seconds"] for r in runs),
            "apart_samples_per_s_each": [r["train_samples_per_s"] for r in runs]}


def folders(events: int, work: Path) -> tuple[Path, Path]:
    """The synthetic tables' and the run's folder of one size."""
    return work / f"synthetic-{events}", work / f"run-{events}"


def train_args(run: Path, batch_size: int, sparse: bool, max_steps: int, ema: bool
               ) -> tuple[str, ...]:
    return ("train", str(run), str(batch_size), str(int(sparse)), str(max_steps), str(int(ema)))


@dataclass(frozen=True)
class Catalogue:
    """Users and items of the synthetic data; 0 = the default that grows with the events."""

    users: int = 0
    items: int = 0


def measure(events: int, work: Path, batch_size: int, keep: bool, sparse: bool,
            max_steps: int, compare_dense: bool = False, ranks: int = 1,
            ema: bool = False, catalogue: Catalogue = Catalogue()) -> dict:
    from make_scale_data import make_scale_data  # benchmarks/ is this script's folder

    data_dir, run = folders(events, work)
    users = catalogue.users or max(100, events // 100)
    items = catalogue.items or max(100, events // 200)
    start = time.perf_counter()
    make_scale_data(events, users, items, 0, data_dir)
    result = {"events": events, "users": users, "items": items, "synthetic": True,
              "generate_seconds": time.perf_counter() - start}
    shutil.rmtree(run, ignore_errors=True)
    result |= in_child("data", str(data_dir), str(run))
    train = train_args(run, batch_size, sparse, max_steps, ema)
    if ranks > 1:  # the reference: one process on the same artifact, in the same run
        one = in_child(*train)
        result["one_rank_samples_per_s"] = one["train_samples_per_s"]
    result |= in_child(*train, ranks=ranks)
    if ranks > 1:
        weak = in_child(*train_args(run, batch_size * ranks, sparse,
                                    max_steps and max_steps // ranks, ema), ranks=ranks)
        result |= {"strong_scaling": result["train_samples_per_s"] / one["train_samples_per_s"],
                   "weak_batch_size": batch_size * ranks,
                   "weak_samples_per_s": weak["train_samples_per_s"],
                   "weak_train_samples": weak["train_samples"],
                   "weak_scaling": weak["train_samples_per_s"] / one["train_samples_per_s"]}
        apart = side_by_side(train_args(run, batch_size // ranks, sparse, max_steps, ema),
                             ranks)
        result |= apart | {"apart_scaling": apart["apart_samples_per_s"]
                           / one["train_samples_per_s"]}
    if compare_dense:  # the same steps with dense updates, right after, on the same artifact
        dense = in_child(*train_args(run, batch_size, False, max_steps, ema), ranks=ranks)
        result["dense_train_samples_per_s"] = dense["train_samples_per_s"]
        result["dense_train_peak_rss"] = dense["train_peak_rss"]
        result["sparse_vs_dense"] = result["train_samples_per_s"] / dense["train_samples_per_s"]
    if not keep:
        remove(events, work)
    return result


def remove(events: int, work: Path) -> None:
    for folder in folders(events, work):
        shutil.rmtree(folder, ignore_errors=True)


def repeat_training(results: list[dict], work: Path, repeats: int, max_steps: int,
                    ema: bool) -> None:
    """Train every size ``repeats - 1`` more times, the sizes in turn, and set each size's
    ``train_samples_per_s`` to the median of its runs (all of them in
    ``train_samples_per_s_runs``) and ``train_peak_rss`` to the largest."""
    for r in results:
        r["train_samples_per_s_runs"] = [r["train_samples_per_s"]]
    for round_ in range(2, repeats + 1):
        for r in results:
            again = in_child(*train_args(folders(r["events"], work)[1], r["batch_size"],
                                         r["sparse_updates"], max_steps, ema))
            r["train_samples_per_s_runs"].append(again["train_samples_per_s"])
            r["train_peak_rss"] = max(r["train_peak_rss"], again["train_peak_rss"])
            print(f"{r['events']:>12,} events  training run {round_} of {repeats}: "
                  f"{again['train_samples_per_s']:,.0f} samples/s", flush=True)
    for r in results:
        runs = r["train_samples_per_s_runs"]
        r["train_samples_per_s"] = statistics.median(runs)
        r["train_seconds"] = r["train_samples"] / r["train_samples_per_s"]


def show(r: dict) -> str:
    gib = 2.0**30
    epoch = "partial epoch" if r["partial_epoch"] else "epoch"
    updates = ("sparse" if r["sparse_updates"] else "dense") + " updates"
    updates += f", {r['ranks']} ranks" if r.get("ranks", 1) > 1 else ""
    updates += ", weight average" if r.get("weight_average") else ""
    return (f"{r['events']:>12,} events ({r['users']:,} users, {r['items']:,} items)  "
            f"generate {r['generate_seconds']:7.1f} s  "
            f"data {r['data_seconds']:7.1f} s  peak {r['data_peak_rss'] / gib:5.2f} GiB  |  "
            f"DIN {epoch} ({updates}) {r['train_samples']:,} samples "
            f"{r['train_seconds']:7.1f} s  {r['train_samples_per_s']:,.0f} samples/s  "
            f"peak {r['train_peak_rss'] / gib:5.2f} GiB"
            + (f"  |  dense updates {r['dense_train_samples_per_s']:,.0f} samples/s, sparse / "
               f"dense x{r['sparse_vs_dense']:.2f}" if "sparse_vs_dense" in r else "")
            + (f"\n{'':14s}{r['ranks']} ranks / 1 rank ({r['one_rank_samples_per_s']:,.0f} "
               f"samples/s at batch {r['batch_size']:,}): same global batch "
               f"x{r['strong_scaling']:.2f}; {r['batch_size']:,} rows a rank (global "
               f"{r['weak_batch_size']:,}: {r['weak_samples_per_s']:,.0f} samples/s) "
               f"x{r['weak_scaling']:.2f}" if "strong_scaling" in r else "")
            + (f"\n{'':14s}{r['ranks']} processes apart (batch "
               f"{r['batch_size'] // r['ranks']:,} each, one shard each, no communication: "
               f"the ceiling at the same global batch) {r['apart_samples_per_s']:,.0f} samples/s"
               f" x{r['apart_scaling']:.2f}; a rank's gradient exchange "
               f"{r['reduce_ms_per_step']:.1f} ms a step" if "apart_scaling" in r else ""))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        mode, args = sys.argv[2], sys.argv[3:]
        out = (child_data(Path(args[0]), Path(args[1])) if mode == "data"
               else child_train(Path(args[0]), int(args[1]), bool(int(args[2])), int(args[3]),
                                bool(int(args[4])),
                                (int(args[5]), int(args[6])) if len(args) > 6 else None))
        print(json.dumps(out))
        end_process(0)  # a torchrun rank ends without the interpreter's shutdown (see there)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/scale"))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the data and run folders")
    parser.add_argument("--dense-updates", action="store_true",
                        help="train with ctr.train.sparse_updates = false (every step updates "
                             "every embedding row; the default here is sparse updates)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="train only this many batches (a partial epoch, marked so in the "
                             "output; 0 = the whole epoch)")
    parser.add_argument("--compare-dense", action="store_true",
                        help="also train the same steps with dense updates and print the ratio")
    parser.add_argument("--ranks", type=int, default=1,
                        help="train data-parallel under torchrun with this many ranks (gloo)")
    parser.add_argument("--ema", action="store_true",
                        help="also keep the weight average (ema_decay of the config), as fit does")
    parser.add_argument("--users", type=int, default=0,
                        help="users of every size's synthetic data (default: events / 100)")
    parser.add_argument("--items", type=int, default=0,
                        help="items of every size's synthetic data (default: events / 200); "
                             "with one catalogue for all sizes the rates compare event counts "
                             "alone")
    parser.add_argument("--repeats", type=int, default=1,
                        help="train each size this many times, the sizes in turn, and report "
                             "the median samples/s (one process only)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if min(args.users, args.items) < 0:
        parser.error("--users and --items must be >= 1 (or 0: the default)")
    if args.repeats > 1 and (args.ranks > 1 or args.compare_dense):
        parser.error("--repeats repeats one-process training; it does not combine with "
                     "--ranks or --compare-dense")
    results = []
    keep_all = args.keep or args.repeats > 1  # the artifacts are trained on again below
    for events in args.events:
        results.append(measure(events, args.work, args.batch_size, keep_all,
                               not args.dense_updates, args.max_steps, args.compare_dense,
                               args.ranks, args.ema, Catalogue(args.users, args.items)))
        print(show(results[-1]), flush=True)
    if args.repeats > 1:
        repeat_training(results, args.work, args.repeats, args.max_steps, args.ema)
        for r in results:
            print(show(r) + "  (median of " + ", ".join(
                f"{x:,.0f}" for x in r["train_samples_per_s_runs"]) + ")", flush=True)
        if not args.keep:
            for r in results:
                remove(r["events"], args.work)
    base = results[0]
    for r in results[1:]:
        r["data_time_ratio_vs_first"] = r["data_seconds"] / base["data_seconds"]
        r["train_rate_ratio_vs_first"] = r["train_samples_per_s"] / base["train_samples_per_s"]
    out = results[0] if len(results) == 1 else {"sizes": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
