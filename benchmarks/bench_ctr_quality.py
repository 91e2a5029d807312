"""Quality side by side (P1, P1-cold v2, P4): FuxiCTR 2.3.10 DIN (tuned on valid), FuxiCTR DIN
+ the same frozen content vectors, mimrec ID-only DIN and mimrec CiUBM, with paired intervals.

Every number is computed by mimrec's metrics (``mimrec.eval.metrics.ctr_metrics``) on each
model's test predictions of the same P1 split:

- mimrec: ``mimrec data`` once, then ``mimrec pretrain``, ``csft``, ``index`` and ``train
  --set ctr.train.threads=1 --set ctr.train.workers=1`` into RUN (DIN and CiUBM x seeds, one
  process: it is one of the ``--jobs`` slots; skipped when RUN already holds a CTR artifact and
  ``--reuse`` is given); metrics read from ``RUN/ctr/manifest.json``.
- FuxiCTR: ``benchmarks/fuxictr_p1.py`` in ``.venv-fuxictr`` on ``RUN/data``: its own
  preprocessing once, then one process per seed with its own fit loop (tuned config by default).
- The content peer (``--content csft``, the default; ``--content`` alone skips it): the vectors
  of ``RUN/index/<source>`` (the ones CiUBM reads) exported to ``bench-quality/content-<source>.npz``
  and fed to the same tuned FuxiCTR DIN through its pretrained-embedding feature (concatenated
  with the ID embedding, frozen). Its hyper-parameters are the tuned DIN's, not searched again.

Up to ``--jobs`` processes run at once (1 torch thread each). Prints mean ± std per model,
RelaImpr against FuxiCTR DIN (tuned), and mimrec CiUBM's paired-bootstrap ΔAUC / ΔgAUC against
each peer (users resampled, seed k against seed k; overall and per popularity bucket, from the
saved test predictions); where the data knows each row's true click probability (P4), the
oracle's metrics on the same test rows and the share of the mimrec DIN-to-oracle AUC gap each
model closes; writes JSON. Never asserts. ``--set`` passes data settings to ``mimrec
data`` (and the later stages), e.g. P1-cold v2: ``--set data.new_item_fraction=0.2 --set
data.new_item_launch=valid``; P4: ``--config configs/fashion_ctr.toml``.

Usage: .venv/bin/python benchmarks/bench_ctr_quality.py --run RUN [--seeds 0 1 2] [--jobs 2]
       [--fuxictr-configs tuned] [--content csft] [--set KEY=VALUE ...] [--reuse] [--json OUT]
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

from mimrec.data.sample_shards import read_samples
from mimrec.data.samples import TEST
from mimrec.eval.metrics import rela_impr
from mimrec.eval.report import oracle_metrics
from mimrec.eval.significance import bucket_bootstrap, paired_bootstrap

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


def run_quietly(cmd: list[str]) -> None:
    """Run a preparation step, its output kept back; on failure exit with what it printed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                 f"{(proc.stdout + proc.stderr)[-3000:]}")


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


def export_content(run: Path, source: str, out: Path) -> Path:
    """``RUN/index/<source>``'s vectors as FuxiCTR's pretrained-embedding file (.npz: ``key`` =
    item ids as text, ``value`` = float32 vectors)."""
    from mimrec.store.center import RepresentationCenter

    store = RepresentationCenter(run / "index" / source)
    path = out / f"content-{source}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, key=np.asarray(store.ids, dtype=str), value=store.vectors.astype(np.float32))
    tmp.replace(path)
    return path


def mimrec_predictions(run: Path, variant: str, seeds: list[int]) -> dict[int, np.ndarray]:
    """mimrec's test probabilities of ``variant`` per seed (``RUN/ctr/predictions.npz``)."""
    with np.load(run / "ctr" / "predictions.npz") as preds:
        return {s: preds[f"{variant}-seed{s}/test"] for s in seeds
                if f"{variant}-seed{s}/test" in preds}


def versus_peers(run: Path, model: dict[int, np.ndarray], peers: dict[str, dict[int, np.ndarray]]
                 ) -> dict[str, dict]:
    """Paired bootstrap of ``model`` against each peer on the test rows: overall and per bucket."""
    s = read_samples(run / "data" / "samples")
    test = s.split == TEST
    users, labels, buckets = s.user[test], s.label[test], s.bucket[test]
    names = tuple(str(n) for n in s.bucket_names)
    out = {}
    for name, base in peers.items():
        out[name] = {"all": paired_bootstrap(users, labels, model, base),
                     "buckets": bucket_bootstrap(users, labels, buckets, model, base,
                                                 names=names)}
    return out


def oracle_on_test(run: Path) -> dict | None:
    """Metrics of the true click probability on the test rows (None unless the data has it)."""
    s = read_samples(run / "data" / "samples")
    if not len(s.click_probability):
        return None
    test = s.split == TEST
    rows = {"user": s.user[test], "label": s.label[test], "bucket": s.bucket[test],
            "click_probability": s.click_probability[test]}
    return oracle_metrics(rows, tuple(str(n) for n in s.bucket_names))


def print_versus(label: str, table: dict[str, dict]) -> None:
    """One line per peer and bucket: ΔAUC [interval], ΔgAUC, rows, resolved."""
    print(f"\n{label} minus each peer (test; paired bootstrap over users, 95%):")
    for peer, r in table.items():
        rows = [("all", r["all"])] + list(r["buckets"].items())
        for bucket, b in rows:
            if b is None:
                continue
            lo, hi = b["delta_auc_interval"]
            size = f"{b['n']:>6} rows" if "n" in b else "      all"
            verdict = "resolved" if lo > 0 or hi < 0 else "not resolved (interval holds 0)"
            print(f"  vs {peer:<28} {bucket:<5} {size}  ΔAUC {b['delta_auc']:+.4f} "
                  f"[{lo:+.4f}, {hi:+.4f}]  ΔgAUC {b['delta_gauc']:+.4f}  {verdict}")


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
    parser.add_argument("--content", nargs="?", const=None, default="csft",
                        help="index source fed to the FuxiCTR content peer (alone: no peer)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every mimrec stage")
    parser.add_argument("--reuse", action="store_true",
                        help="keep finished mimrec / FuxiCTR results found in RUN")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = args.run / "bench-quality"
    seeds = " ".join(map(str, args.seeds))
    data = args.run / "data"
    mimrec = [sys.executable, "-m", "mimrec"]
    sets = [part for kv in args.overrides for part in ("--set", kv)]
    if not (data / "manifest.json").is_file():  # both sides read this one P1 split
        subprocess.run(mimrec + ["data", str(args.config), "--out", str(args.run), *sets],
                       check=True)
    jobs = []
    content_first = args.content and not (args.run / "index" / "manifest.json").is_file()
    if content_first:  # the content peer needs the index before the jobs start
        for stage in ("pretrain", "csft", "index"):
            subprocess.run(mimrec + [stage, str(args.config), "--out", str(args.run), *sets],
                           check=True)
    if not (args.reuse and (args.run / "ctr" / "manifest.json").is_file()):
        stages = [mimrec + [stage, str(args.config), "--out", str(args.run), *sets]
                  for stage in ("pretrain", "csft", "index")
                  if not (args.content and (args.run / "index" / "manifest.json").is_file())]
        # one process, one thread: this job is one of the --jobs slots, beside FuxiCTR's seeds
        stages.append(mimrec + ["train", str(args.config), "--out", str(args.run), *sets, "--set",
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
        run_quietly(fx_base + ["--out", str(out / "fuxictr-prepare.json"), "--no-quality",
                               "--no-throughput"])
        peers = [(config, fx_base, []) for config in args.fuxictr_configs]
        if args.content and "tuned" in args.fuxictr_configs:
            npz = export_content(args.run, args.content, out)
            fx_content = [str(FUXICTR_PYTHON), "benchmarks/fuxictr_p1.py", str(data), "--work",
                          str(args.run / f"fuxictr-content-{args.content}"), "--reuse",
                          "--threads", "1"]
            run_quietly(fx_content + ["--out", str(out / "fuxictr-content-prepare.json"),
                                      "--no-quality", "--no-throughput", "--content", str(npz)])
            peers.append(("tuned+content", fx_content, ["--content", str(npz)]))
        for label, base, extra in peers:
            config = label.split("+")[0]
            for seed in args.seeds:
                result = out / f"fuxictr-{label}-seed{seed}.json"
                if args.reuse and result.is_file():
                    continue
                jobs.append((f"fuxictr {label} seed {seed}",
                             base + ["--out", str(result), "--config", config, "--seeds",
                                     str(seed), "--no-throughput", *extra],
                             out / f"fuxictr-{label}-seed{seed}.log"))
    seconds = run_jobs(jobs, args.jobs)
    models = mimrec_results(args.run)
    peer_predictions: dict[str, dict[int, np.ndarray]] = {}
    labels = list(args.fuxictr_configs) + (
        ["tuned+content"] if args.content and "tuned" in args.fuxictr_configs else [])
    for label in labels if have_fuxictr else []:
        per_seed, preds = {}, {}
        for seed in args.seeds:
            r = json.loads((out / f"fuxictr-{label}-seed{seed}.json").read_text())
            per_seed[str(seed)] = r["seeds"][str(seed)]["test"]
            saved = r["seeds"][str(seed)].get("predictions")
            if saved and Path(saved).is_file():
                preds[seed] = np.load(saved)
        name = (f"fuxictr din + {args.content} vectors (tuned)" if label.endswith("+content")
                else f"fuxictr din ({label})")
        models[name] = per_seed
        if preds:
            peer_predictions[name] = preds
    result = {"seeds": seeds, "job_seconds": seconds, "overrides": args.overrides,
              "models": {name: summary(per_seed) for name, per_seed in models.items()}}
    ciubm = mimrec_predictions(args.run, "ciubm", args.seeds)
    din = mimrec_predictions(args.run, "din", args.seeds)
    if ciubm:
        result["ciubm_versus"] = versus_peers(args.run, ciubm, {"mimrec din": din,
                                                                **peer_predictions})
    ref = result["models"].get("fuxictr din (tuned)")
    oracle = result["oracle"] = oracle_on_test(args.run)
    din_auc = result["models"].get("mimrec din", {}).get("auc", {}).get("mean")
    print(f"{'model':<26}{'AUC':>17}{'gAUC':>17}{'LogLoss':>9}"
          + "".join(f"{'AUC ' + b:>10}" for b in BUCKETS) + f"{'RelaImpr':>10}")
    for name, s in result["models"].items():
        impr = rela_impr(s["auc"]["mean"], ref["auc"]["mean"]) if ref else float("nan")
        s["rela_impr_vs_fuxictr_tuned"] = impr
        print(f"{name:<26}{s['auc']['mean']:>9.4f} ± {s['auc']['std']:.4f}"
              f"{s['gauc']['mean']:>9.4f} ± {s['gauc']['std']:.4f}{s['logloss']['mean']:>9.4f}"
              + "".join(f"{s['auc_' + b]['mean']:>10.4f}" for b in BUCKETS) + f"{impr:>9.2f}%")
        if oracle and din_auc is not None:
            s["oracle_gap_closed_vs_mimrec_din"] = ((s["auc"]["mean"] - din_auc)
                                                    / (oracle["auc"] - din_auc))
    if oracle:
        print(f"{'oracle (true click prob.)':<26}{oracle['auc']:>9.4f}{'':>8}{oracle['gauc']:>9.4f}"
              f"{'':>8}{oracle['logloss']:>9.4f}"
              + "".join(f"{(oracle['buckets'].get(b) or {}).get('auc', float('nan')):>10.4f}"
                        for b in BUCKETS))
        for name, s in result["models"].items():
            if "oracle_gap_closed_vs_mimrec_din" in s:
                print(f"  {name}: {s['oracle_gap_closed_vs_mimrec_din']:+.1%} of the mimrec "
                      "DIN-to-oracle AUC gap closed")
    if "ciubm_versus" in result:
        print_versus("mimrec ciubm", result["ciubm_versus"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
