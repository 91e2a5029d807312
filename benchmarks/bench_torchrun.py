"""torchrun: train samples/s of DIN with one process and with ``--ranks`` data-parallel ranks.

Builds the ML-100K data artifact once (``configs/movielens.toml``), then runs ``mimrec train``
(DIN, seed 0, ``--epochs`` epochs, one torch thread per process, batch 512) as one process and
under ``torchrun --standalone --nproc_per_node=RANKS`` (gloo on the CPU), and reads each run's
``train_samples_per_second`` from the manifest (train rows over every rank x epochs / seconds,
validation on rank 0 included) and its valid AUCs. Prints and writes JSON; never asserts.

Usage: python benchmarks/bench_torchrun.py --json OUT.json [--ranks 2] [--epochs 2]
       [--work runs/bench_torchrun]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = ["--set", "ctr.variants=['din']", "--set", "ctr.train.seeds=[0]",
            "--set", "ctr.train.workers=1", "--set", "ctr.train.threads=1",
            "--set", "ctr.train.patience=100"]


def mimrec(args: list[str], ranks: int = 1) -> None:
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    subprocess.run([*launcher, "-m", "mimrec", *args], check=True)


def train(work: Path, ranks: int) -> dict:
    start = time.perf_counter()
    mimrec(["train", "--out", str(work)], ranks)
    wall = time.perf_counter() - start
    record = json.loads((work / "ctr" / "manifest.json").read_text())["metrics"]["din-seed0"]
    return {"ranks": ranks, "wall_seconds": wall,
            "train_samples_per_s": record["train_samples_per_second"],
            "valid_auc": [e["valid_auc"] for e in record["epochs"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_torchrun"))
    args = parser.parse_args()
    if not (args.work / "data" / "manifest.json").is_file():
        mimrec(["data", "configs/movielens.toml", "--out", str(args.work), *SETTINGS,
                "--set", f"ctr.train.max_epochs={args.epochs}"])
    one, many = train(args.work, 1), train(args.work, args.ranks)
    result = {"one": one, "ranks": many,
              "speedup": many["train_samples_per_s"] / one["train_samples_per_s"]}
    for r in (one, many):
        print(f"{r['ranks']} rank(s): {r['train_samples_per_s']:,.0f} samples/s, wall "
              f"{r['wall_seconds']:.0f} s, valid AUC {', '.join(f'{a:.4f}' for a in r['valid_auc'])}")
    print(f"speed-up: {result['speedup']:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
