"""Run every benchmark and write ``benchmarks/RESULTS.md`` (what ``make bench`` calls).

Each benchmark is one command; its output is kept under ``RUN/results/<name>.txt`` (JSON beside
it where the script writes one) and quoted in RESULTS.md together with the exact command, the
environment (CPU, cores, library versions of both environments) and a summary table of the
ratios against the reference each benchmark measures in the same run. Timings are read, never
asserted. ``benchmarks/bench_serve.py`` (the scoring service load test) runs when it exists.

Usage: .venv/bin/python benchmarks/run_all.py [--run runs/bench] [--only NAME ...]
       [--results-md benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from environment import environment  # benchmarks/ is this script's folder
from write_results import write_results

PY = sys.executable
# Run only when named with --only: two torch threads per process are only meaningful on an idle
# machine, and the default run stays within the hour on 2 cores.
# "scale" (1M and 10M synthetic events, about 10 min on an idle machine) too, and "quality_p4"
# (P4's 250,000 samples: its six FuxiCTR seeds took 466-702 s each at one thread on a quiet
# machine, about an hour of one core, beside mimrec's pipeline).
OPTIONAL = {"throughput_2threads", "store_scale_1m", "scale", "quality_p4"}


def commands(run: Path) -> dict[str, list[str]]:
    """The benchmarks in the order they run: quality first (its pipeline run feeds the rest)."""
    res = run / "results"
    cmds = {
        "quality": [PY, "benchmarks/bench_ctr_quality.py", "--run", str(run), "--reuse",
                    "--json", str(res / "quality.json")],
        # the same peers on P1-cold v2 and P4, each in its own run folder
        "quality_cold_v2": [PY, "benchmarks/bench_ctr_quality.py", "--run", str(run / "cold-v2"),
                            "--reuse", "--set", "data.new_item_fraction=0.2", "--set",
                            "data.new_item_launch=valid", "--json",
                            str(res / "quality_cold_v2.json")],
        "quality_p4": [PY, "benchmarks/bench_ctr_quality.py", "--run", str(run / "p4"),
                       "--config", "configs/fashion_ctr.toml", "--reuse",
                       "--json", str(res / "quality_p4.json")],
        "throughput": [PY, "benchmarks/bench_ctr_throughput.py", "--run", str(run),
                       "--threads", "1", "--json", str(res / "throughput.json")],
        "throughput_2threads": [PY, "benchmarks/bench_ctr_throughput.py", "--run", str(run),
                                "--threads", "2", "--fuxictr", "mimrec_shapes",
                                "--json", str(res / "throughput_2threads.json")],
        "text_encoding": [PY, "benchmarks/bench_text_encoding.py", "--threads", "2"],
        "store_lookup": [PY, "benchmarks/bench_store_lookup.py", "--run", str(run),
                         "--json", str(res / "store_lookup.json")],
        "store_scale": [PY, "benchmarks/bench_store_scale.py", "--items", "100000",
                        "--json", str(res / "store_scale.json")],
        "store_scale_1m": [PY, "benchmarks/bench_store_scale.py", "--items", "1000000",
                           "--json", str(res / "store_scale_1m.json")],
        "sample_builder": [PY, "benchmarks/bench_sample_builder.py"],
        "ctr_scaling": [PY, "benchmarks/bench_ctr_scaling.py", "--threads", "1",
                        "--json", str(res / "ctr_scaling.json")],
        "scale": ["nice", "-n", "5", PY, "benchmarks/bench_scale.py", "--events", "1000000",
                  "10000000", "--work", str(run / "scale"), "--json", str(res / "scale.json")],
    }
    if Path("benchmarks/bench_serve.py").is_file():  # the serving load benchmark, when present
        cmds["serve"] = [PY, "benchmarks/bench_serve.py", "--run", str(run), "--seconds", "30",
                         "--json", str(res / "serve.json")]
    return cmds


def run_one(name: str, cmd: list[str], res: Path) -> dict:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    (res / f"{name}.txt").write_text(proc.stdout)
    (res / f"{name}.err").write_text(proc.stderr)
    print(proc.stdout, flush=True)
    if proc.returncode != 0:
        print(f"!! {name} failed (exit {proc.returncode}): {proc.stderr[-2000:]}", flush=True)
    return {"command": " ".join(cmd), "seconds": seconds, "returncode": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bench"))
    parser.add_argument("--only", nargs="*", default=None, help="run only these benchmarks")
    parser.add_argument("--results-md", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    res = args.run / "results"
    res.mkdir(parents=True, exist_ok=True)
    log_path = res / "runs.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    started = time.perf_counter()
    for name, cmd in commands(args.run).items():
        if (name in args.only) if args.only is not None else name not in OPTIONAL:
            log[name] = run_one(name, cmd, res)
            log_path.write_text(json.dumps(log, indent=1))
    if args.only is None:
        log["_total_seconds"] = time.perf_counter() - started
        log_path.write_text(json.dumps(log, indent=1))
    write_results(args.run, log, environment(), args.results_md)
    print(f"wrote {args.results_md}")


if __name__ == "__main__":
    main()
