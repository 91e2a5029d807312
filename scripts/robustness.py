"""Judge the shipped defaults on several protocols at once (README "Robustness of the defaults").

Runs the whole pipeline (``mimrec run``: stage 1, C-SFT, index, CTR, report) with one config on
each protocol, then reads every run's ``report.json`` and ``index/manifest.json`` into one table:
ID-only DIN against CiUBM on valid and test gAUC, test AUC, the cold and tail buckets (paired
bootstrap 95% intervals, bucket sizes), which model the run serves, and which vectors the index
stage kept. A protocol passes when CiUBM's valid and test gAUC are >= DIN's - 0.002 and its cold
and tail bucket AUC >= DIN's (issue #13's acceptance); the table says which ones do not.

Protocols (``shared/protocol.md``; the windows are rolling time windows of ML-100K P1):

- ``p1``: P1 (train 0.8, valid 0.1, test 0.1 of the time-sorted log);
- ``p1-w1``, ``p1-w2``: the same cut ending at 0.8 and 0.9 of the log (test = its 8th / 9th tenth);
- ``p1-cold-v2``: P1-cold v2 (a fifth of the items launch at the start of valid);
- ``p4``: P4 with ``configs/fashion_ctr.toml`` (images through every stage; about an hour a seed
  on 2 cores, so only when named).

Usage: .venv/bin/python scripts/robustness.py --out runs/robust [--protocols p1 p1-w1 ...]
       [--config configs/movielens.toml] [--set KEY=VALUE ...] [--reuse] [--md OUT.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROTOCOLS: dict[str, tuple[str | None, list[str]]] = {  # name -> (config or None = --config, sets)
    "p1": (None, []),
    "p1-w1": (None, ["data.train_fraction=0.6", "data.valid_fraction=0.1", "data.window_end=0.8"]),
    "p1-w2": (None, ["data.train_fraction=0.7", "data.valid_fraction=0.1", "data.window_end=0.9"]),
    "p1-cold-v2": (None, ["data.new_item_fraction=0.2", "data.new_item_launch=valid"]),
    "p4": ("configs/fashion_ctr.toml", []),
}
DEFAULT = ["p1", "p1-w1", "p1-w2", "p1-cold-v2"]
TOLERANCE = 0.002  # CiUBM's gAUC may be this much below DIN's (issue #13)


def run_protocol(name: str, config: str, sets: list[str], out: Path, reuse: bool) -> float:
    """``mimrec run`` one protocol into ``out/name`` (log in ``out/name.log``); its seconds."""
    run = out / name
    if reuse and (run / "report.json").is_file():
        print(f"{name}: reusing {run}", flush=True)
        return 0.0
    cmd = [str(Path(sys.executable).with_name("mimrec")), "run", config, "--out", str(run)]
    for s in sets:
        cmd += ["--set", s]
    print(f"{name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.log").open("w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"{name} failed (exit {code}); see {out / f'{name}.log'}")
    seconds = time.perf_counter() - start
    print(f"{name}: done in {seconds:.0f} s", flush=True)
    return seconds


def summarise(run: Path, baseline: str = "din", model: str = "ciubm") -> dict:
    """The figures of one run that the robustness table shows."""
    report = json.loads((run / "report.json").read_text())
    row: dict = {"protocol": report["protocol"], "served": report["valid_best"]}
    for split, section in (("test", report), ("valid", report.get("valid") or {})):
        models = section.get("models", {})
        if baseline not in models or model not in models:
            continue
        ours, base = models[model], models[baseline]
        vs = ours.get("vs_baseline") or {}
        row[split] = {"din_gauc": base["gauc"], "ciubm_gauc": ours["gauc"],
                      "delta_gauc": ours["gauc"] - base["gauc"],
                      "delta_gauc_interval": vs.get("delta_gauc_interval"),
                      "din_auc": base["auc"], "ciubm_auc": ours["auc"],
                      "delta_auc": ours["auc"] - base["auc"],
                      "delta_auc_interval": vs.get("delta_auc_interval"),
                      "buckets": {b: _bucket(r) for b, r in
                                  (ours.get("vs_baseline_buckets") or {}).items()}}
        control = ours.get("vs_control")  # content's own share (ctr.shuffled_controls)
        if control:
            row[split]["vs_control"] = {"delta_auc": control["delta_auc"],
                                        "interval": control["delta_auc_interval"]}
    off = (report.get("content_off") or {}).get(model)
    if off:  # did not beat its control on valid: its weights are its DIN start
        row["content_off"] = off
    index = run / "index" / "manifest.json"
    if index.is_file():
        metrics = json.loads(index.read_text())["metrics"]
        row["vectors"] = {name: m.get("vectors", "raw") for name, m in metrics.items()}
    if report.get("retrieval"):
        r = report["retrieval"]
        row["p2_r50"] = {k: v.get("recall@50") for k, v in r.items() if isinstance(v, dict)}
    row["passes"] = passes(row)
    return row


def _bucket(result: dict | None) -> dict | None:
    if result is None:
        return None
    return {"delta_auc": result["delta_auc"], "interval": result["delta_auc_interval"],
            "n": result["n"], "resolved": result["resolved"]}


def passes(row: dict) -> dict[str, bool]:
    """Issue #13's acceptance, item by item: gAUC within the tolerance on valid and test, cold
    and tail bucket AUC not below DIN's (point estimates; the intervals are in the table)."""
    out = {}
    for split in ("valid", "test"):
        if split in row:
            out[f"{split}_gauc"] = row[split]["delta_gauc"] >= -TOLERANCE
    for bucket in ("cold", "tail"):
        b = row.get("test", {}).get("buckets", {}).get(bucket)
        if b is not None:
            out[bucket] = b["delta_auc"] >= 0
    return out


def _delta(value: float, interval: list[float] | None) -> str:
    text = f"{value:+.4f}"
    return text + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "")


def _control(split: dict | None) -> str:
    """CiUBM's AUC difference to its shuffled-content control, or '-' without one."""
    control = (split or {}).get("vs_control")
    return _delta(control["delta_auc"], control["interval"]) if control else "-"


def _control_cell(row: dict) -> str:
    """CiUBM against its control on valid / test, or why its content was switched off."""
    off = row.get("content_off")
    if off:
        return (f"switched off (valid AUC as trained {off['valid_auc']:.4f}, control "
                f"{off['control_valid_auc']:.4f}; test AUC as trained "
                f"{off['test_as_trained']['auc']:.4f})")
    return f"{_control(row.get('valid'))} / {_control(row.get('test'))}"


def markdown(rows: dict[str, dict]) -> str:
    """The robustness table, then the buckets table, as README-ready markdown."""
    lines = ["| protocol | valid gAUC DIN / CiUBM | test gAUC DIN / CiUBM (Δ [95%]) | test AUC Δ [95%] "
             "| CiUBM - its control: valid / test AUC [95%] | served | C-SFT vectors | passes |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        v, t = row.get("valid"), row.get("test")
        if not t:
            continue
        valid = f"{v['din_gauc']:.4f} / {v['ciubm_gauc']:.4f}" if v else "-"
        failed = [k for k, ok in row["passes"].items() if not ok]
        lines.append(
            f"| {row['protocol']} | {valid} | {t['din_gauc']:.4f} / {t['ciubm_gauc']:.4f} "
            f"({_delta(t['delta_gauc'], t['delta_gauc_interval'])}) | "
            f"{_delta(t['delta_auc'], t['delta_auc_interval'])} | {_control_cell(row)} | "
            f"{row['served']} | "
            f"{row.get('vectors', {}).get('csft', '-')} | "
            f"{'yes' if not failed else 'no: ' + ', '.join(failed)} |")
    lines += ["", "| protocol | bucket | rows | CiUBM - DIN test AUC [95%] | resolved |",
              "|---|---|---|---|---|"]
    for row in rows.values():
        for bucket, b in row.get("test", {}).get("buckets", {}).items():
            if b is not None:
                lines.append(f"| {row['protocol']} | {bucket} | {b['n']:,} | "
                             f"{_delta(b['delta_auc'], b['interval'])} | "
                             f"{'yes' if b['resolved'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/robust"))
    parser.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOLS), default=DEFAULT)
    parser.add_argument("--config", default="configs/movielens.toml",
                        help="the config judged on every MovieLens protocol")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every protocol (e.g. to judge another default)")
    parser.add_argument("--reuse", action="store_true", help="keep runs that have a report")
    parser.add_argument("--md", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    rows = {}
    for name in args.protocols:
        config, sets = PROTOCOLS[name]
        seconds = run_protocol(name, config or args.config, sets + args.set, args.out, args.reuse)
        rows[name] = summarise(args.out / name) | {"seconds": round(seconds, 1),
                                                   "sets": sets + args.set}
        print(markdown({name: rows[name]}), flush=True)
    table = markdown(rows)
    (args.out / "robustness.json").write_text(json.dumps(rows, indent=1))
    if args.md:
        args.md.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
