"""The index stage at catalogue scale: encode a synthetic 1M-item catalogue, killed and resumed.

Issue 16: "the index stage encodes the 1M-item catalogue and prints items/s; a killed run
resumes". Steps, each in a child process:

1. synthetic tables from ``benchmarks/make_scale_data.py`` with ``--items`` items (titles of 1-4
   words of MovieLens's title vocabulary, genres, a year; synthetic, said so in the output) and
   ``--events`` events, then ``mimrec data`` on them (configs/movielens.toml);
2. the index stage's encoding of the raw text vectors (``run_index`` with the raw source: the
   packaged all-MiniLM-L6-v2, mean-pooled; a trained encoder costs the same transformer forward
   per item), **killed with SIGKILL** once ``--kill-after`` shards are written (0: no kill);
3. the same command again: it reuses the finished shards, encodes the rest and writes the store.

Under ``--ranks N`` both runs of step 2-3 go through ``torchrun --standalone`` (worker r encodes
shards r, r + N, ...), one torch thread each; otherwise one process with ``--threads``.
Printed: items/s of the resumed run (items it encoded / its encoding seconds), shards reused,
the child's peak RSS against the vectors' own bytes, and the store's item count read back.
Writes JSON; never asserts.

Usage: python benchmarks/bench_index_scale.py --items 1000000 --json OUT.json
       [--events 2000000] [--work runs/index-scale] [--kill-after 2] [--ranks 1] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench_scale import CONFIG, child_data, in_child, peak_rss  # benchmarks/ is this folder

from mimrec.runtime import end_process

SYNTHETIC = "synthetic catalogue (benchmarks/make_scale_data.py), real text encoder"


def child_index(run: Path, threads: int) -> dict:
    """The index stage's encoding and store write for the raw source (what ``mimrec index``
    runs per source); rank 0's metrics and this process's peak RSS."""
    from mimrec.config import load_config
    from mimrec.csft.distributed import process_group_from_env, rank
    from mimrec.data.stage import read_data
    from mimrec.store.build import run_index

    cfg = load_config(CONFIG, ["encoder.use_attributes=false"])
    with process_group_from_env():
        items = read_data(run / "data").items
        metrics = run_index({"raw": None}, cfg.encoder, items, run / "index",
                            {"data": run / "data"}, threads=threads)
        lead = rank() == 0
    if not lead:
        return {}
    return {**metrics["raw"], "index_peak_rss": peak_rss()}


def launch(run: Path, threads: int, ranks: int) -> subprocess.Popen:
    """The index child (under torchrun with ``ranks`` > 1); its stderr (progress, errors) goes
    to ``run/index-child.log``."""
    prefix = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={ranks}", "--local-ranks-filter=0"]
    with open(run / "index-child.log", "a") as log:
        return subprocess.Popen([*prefix, __file__, "--child", "index", str(run), str(threads)],
                                stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True)


def shards_written(run: Path) -> int:
    return sum(1 for _ in (run / ".index-shards").glob("raw-*/shard-*.npy"))


def kill_after(run: Path, threads: int, ranks: int, shards: int) -> dict:
    """Start the encoding and SIGKILL its whole process group once ``shards`` shards exist."""
    shutil.rmtree(run / ".index-shards", ignore_errors=True)
    start = time.perf_counter()
    proc = launch(run, threads, ranks)
    while shards_written(run) < shards and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is not None:  # it finished (or failed) before the kill: nothing to resume
        raise SystemExit(f"the index child ended (code {proc.returncode}) before {shards} "
                         "shards were written: use more --items or a smaller --kill-after")
    os.killpg(proc.pid, signal.SIGKILL)  # the child, or torchrun (its ranks have own groups)
    proc.wait()
    time.sleep(3.0)  # ranks end with their launcher (mimrec.processes.end_with_launcher)
    left = subprocess.run(["pgrep", "-f", f"--child index {run} "], capture_output=True,
                          text=True)
    return {"killed_after_seconds": time.perf_counter() - start,
            "shards_when_killed": shards_written(run),
            "processes_left_after_kill": len(left.stdout.split())}


def resume(run: Path, threads: int, ranks: int) -> dict:
    start = time.perf_counter()
    proc = launch(run, threads, ranks)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        log = (run / "index-child.log").read_text()
        raise SystemExit(f"index child failed with {proc.returncode}: {out[-2000:]}\n"
                         f"{log[-3000:]}")
    line = out.strip().splitlines()[-1]
    result = json.loads(line[line.index("{"):])
    result["resume_wall_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        mode, args = sys.argv[2], sys.argv[3:]
        out = (child_data(Path(args[0]), Path(args[1])) if mode == "data"
               else child_index(Path(args[0]), int(args[1])))
        print(json.dumps(out), flush=True)
        end_process(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=None, help="default: 2 x items")
    parser.add_argument("--work", type=Path, default=Path("runs/index-scale"))
    parser.add_argument("--kill-after", type=int, default=2,
                        help="SIGKILL the first run once this many shards are written (0: none)")
    parser.add_argument("--ranks", type=int, default=1, help="torchrun workers (gloo)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (0: torch's default; 1 under --ranks)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    from make_scale_data import make_scale_data

    events = args.events or 2 * args.items
    data_dir, run = args.work / "synthetic", args.work / "run"
    threads = 1 if args.ranks > 1 else args.threads
    start = time.perf_counter()
    make_scale_data(events, max(100, events // 100), args.items, 0, data_dir)
    result: dict = {"items": args.items, "events": events, "synthetic": SYNTHETIC,
                    "ranks": args.ranks, "threads": threads,
                    "generate_seconds": time.perf_counter() - start}
    shutil.rmtree(run, ignore_errors=True)
    result |= in_child("data", str(data_dir), str(run))
    print(f"{args.items:,} items ({SYNTHETIC}): data stage {result['data_seconds']:.1f} s",
          flush=True)
    if args.kill_after:
        result |= kill_after(run, threads, args.ranks, args.kill_after)
        print(f"killed (SIGKILL) after {result['killed_after_seconds']:.1f} s with "
              f"{result['shards_when_killed']} shards written; processes left: "
              f"{result['processes_left_after_kill']}", flush=True)
    encoded = resume(run, threads, args.ranks)
    encoding = encoded.pop("encoding")
    result |= {**encoded, **encoding, "encode_items_per_s": encoding["items_per_second"]}
    from mimrec.store.center import RepresentationCenter

    center = RepresentationCenter(run / "index" / "raw", vectors=False)
    result["store_items"] = len(center)
    result["vectors_bytes"] = len(center) * center.dim * 4
    gib = 2.0**30
    print(f"resumed: {encoding['encoded']:,} items encoded in {encoding['seconds']:.1f} s "
          f"({encoding['items_per_second']:,.0f} items/s), {encoding['reused']} of "
          f"{encoding['shards']} shards reused; store holds {len(center):,} items x "
          f"{center.dim}; peak RSS {result['index_peak_rss'] / gib:.2f} GiB (vectors "
          f"{result['vectors_bytes'] / gib:.2f} GiB)", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
