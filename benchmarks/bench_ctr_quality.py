"""P1 quality side by side: FuxiCTR 2.3.10 DIN, mimrec ID-only DIN and mimrec CiUBM, 3 seeds.

Every number is computed by mimrec's metrics (``mimrec.eval.metrics.ctr_metrics``) on each
model's test predictions of the same P1 split:

- mimrec: ``mimrec data`` once, then ``mimrec pretrain``, ``csft``, ``index`` and ``train
  --set ctr.train.threads=1 --set ctr.train.workers=1`` into RUN (DIN and CiUBM x seeds, one
  process: it is one of the ``--jobs`` slots; skipped when RUN already holds a CTR artifact and
  ``--reuse`` is given); metrics read from ``RUN/ctr/manifest.json``.
- FuxiCTR: ``benchmarks/fuxictr_p1.py`` in ``.venv-fuxictr`` on ``RUN/data``: its own
  preprocessing once, then one process per seed with its own fit loop (tuned config by default).

Up to ``--jobs`` processes run at once (1 torch thread each). Prints mean ± std per model and
RelaImpr against FuxiCTR DIN (tuned); writes JSON. Never asserts.

Usage: .venv/bin/python benchmarks/bench_ctr_quality.py --run RUN [--seeds 0 1 2] [--jobs 2]
       [--fuxictr-configs tuned] [--reuse] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mimrec.eval.metrics import rela_impr

FUXICTR_PYTHON = Path(".venv-fuxictr/bin/python")
METRICS = ("auc", "gauc", "logloss")
BUCKETS = ("cold", "tail", "mid", "head")


def run_jobs(jobs: list[tuple[str, list[str], Path]], slots: int) -> dict[str, float]:
    """Run commands, at most ``slots`` at once, each logging to its file; seconds per job."""
    pending, running, seconds = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < slots:
            name, cmd, log = pending.pop(0)
            print(f"  start {name}: {' '.join(cmd)}", flush=True)
            log.parent.mkdir(parents=True, exist_ok=True)
            running[name] = (subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT),
                             time.perf_counter(), log)
        time.sleep(2)
        for name, (proc, start, log) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                seconds[name] = time.perf_counter() - start
                if proc.returncode != 0:
                    sys.exit(f"{name} failed (exit {proc.returncode}); see {log}")
                print(f"  done  {name} in {seconds[name]:.0f} s", flush=True)
    return seconds


def summary(per_seed: dict[str, dict]) -> dict:
    """Mean and std over seeds of AUC, gAUC, LogLoss and the bucket AUCs."""
    out = {"seeds": sorted(per_seed)}
    for m in METRICS:
        values = [r[m] for r in per_seed.values()]
        out[m] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                  "values": values}
    for b in BUCKETS:
        values = [r["buckets"][b]["auc"] for r in per_seed.values()]
        out[f"auc_{b}"] = {"mean": float(np.mean(values)),
                           "n": next(iter(per_seed.values()))["buckets"][b]["n"]}
    return out


def mimrec_results(run: Path) -> dict[str, dict]:
    manifest = json.loads((run / "ctr" / "manifest.json").read_text())
    by_model: dict[str, dict] = {}
    for key, record in manifest["metrics"].items():
        variant, seed = key.rsplit("-seed", 1)
        by_model.setdefault(f"mimrec {variant}", {})[seed] = record["test"]
    return by_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("configs/movielens.toml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fuxictr-configs", nargs="*", default=["tuned"],
                        choices=["tuned", "default"])
    parser.add_argument("--reuse", action="store_true",
                        help="keep finished mimrec / FuxiCTR results found in RUN")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = args.run / "bench-quality"
    seeds = " ".join(map(str, args.seeds))
    data = args.run / "data"
    mimrec = [sys.executable, "-m", "mimrec"]
    if not (data / "manifest.json").is_file():  # both sides read this one P1 split
        subprocess.run(mimrec + ["data", str(args.config), "--out", str(args.run)], check=True)
    jobs = []
    if not (args.reuse and (args.run / "ctr" / "manifest.json").is_file()):
        stages = [mimrec + [stage, str(args.config), "--out", str(args.run)]
                  for stage in ("pretrain", "csft", "index")]
        # one process, one thread: this job is one of the --jobs slots, beside FuxiCTR's seeds
        stages.append(mimrec + ["train", str(args.config), "--out", str(args.run), "--set",
                                "ctr.train.threads=1", "--set", "ctr.train.workers=1", "--set",
                                f"ctr.train.seeds=[{', '.join(map(str, args.seeds))}]"])
        jobs.append(("mimrec", ["sh", "-c", " && ".join(shlex.join(s) for s in stages)],
                     out / "mimrec.log"))
    have_fuxictr = FUXICTR_PYTHON.exists() and args.fuxictr_configs
    if not FUXICTR_PYTHON.exists():
        print("FuxiCTR environment missing (make bench-env): mimrec only")
    fx_base = [str(FUXICTR_PYTHON), "benchmarks/fuxictr_p1.py", str(data), "--work",
               str(args.run / "fuxictr"), "--reuse", "--threads", "1"]
    if have_fuxictr:  # FuxiCTR's preprocessing once (its local Ray), before the seeds share it
        print(f"  FuxiCTR preprocessing: {' '.join(fx_base)} --no-quality --no-throughput")
        subprocess.run(fx_base + ["--out", str(out / "fuxictr-prepare.json"), "--no-quality",
                                  "--no-throughput"], check=True, capture_output=True)
        for config in args.fuxictr_configs:
            for seed in args.seeds:
                result = out / f"fuxictr-{config}-seed{seed}.json"
                if args.reuse and result.is_file():
                    continue
                jobs.append((f"fuxictr {config} seed {seed}",
                             fx_base + ["--out", str(result), "--config", config, "--seeds",
                                        str(seed), "--no-throughput"],
                             out / f"fuxictr-{config}-seed{seed}.log"))
    seconds = run_jobs(jobs, args.jobs)
    models = mimrec_results(args.run)
    for config in args.fuxictr_configs if have_fuxictr else []:
        per_seed = {}
        for seed in args.seeds:
            r = json.loads((out / f"fuxictr-{config}-seed{seed}.json").read_text())
            per_seed[str(seed)] = r["seeds"][str(seed)]["test"]
        models[f"fuxictr din ({config})"] = per_seed
    result = {"seeds": seeds, "job_seconds": seconds,
              "models": {name: summary(per_seed) for name, per_seed in models.items()}}
    ref = result["models"].get("fuxictr din (tuned)")
    print(f"{'model':<26}{'AUC':>17}{'gAUC':>17}{'LogLoss':>9}"
          + "".join(f"{'AUC ' + b:>10}" for b in BUCKETS) + f"{'RelaImpr':>10}")
    for name, s in result["models"].items():
        impr = rela_impr(s["auc"]["mean"], ref["auc"]["mean"]) if ref else float("nan")
        s["rela_impr_vs_fuxictr_tuned"] = impr
        print(f"{name:<26}{s['auc']['mean']:>9.4f} ± {s['auc']['std']:.4f}"
              f"{s['gauc']['mean']:>9.4f} ± {s['gauc']['std']:.4f}{s['logloss']['mean']:>9.4f}"
              + "".join(f"{s['auc_' + b]['mean']:>10.4f}" for b in BUCKETS) + f"{impr:>9.2f}%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
