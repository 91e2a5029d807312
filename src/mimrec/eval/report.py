"""The run report: metrics of every model over seeds (mean and std), RelaImpr against the
baseline, AUC per popularity bucket; written as ``report.json``, ``report.md`` and a PNG plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mimrec.artifacts import read_manifest, require_stage, write_json_atomic
from mimrec.data.samples import BUCKETS, TEST
from mimrec.data.stage import read_data
from mimrec.eval.config import EvalConfig
from mimrec.eval.metrics import ctr_metrics, rela_impr
from mimrec.eval.plot import plot_bucket_auc
from mimrec.eval.selection import selection_line, valid_best, valid_scores
from mimrec.eval.significance import paired_bootstrap


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and std over seeds, ignoring NaN (a bucket without rows); NaN if all are NaN."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())


def aggregate(per_seed: list[dict]) -> dict:
    """Mean (and std) over seeds of every metric of :func:`ctr_metrics`."""
    out: dict = {"seeds": len(per_seed)}
    for key in ("auc", "gauc", "logloss"):
        out[key], out[f"{key}_std"] = _mean_std([m[key] for m in per_seed])
    out["buckets"] = {}
    for b in BUCKETS:
        mean, std = _mean_std([m["buckets"][b]["auc"] for m in per_seed])
        out["buckets"][b] = {"auc": mean, "auc_std": std, "n": per_seed[0]["buckets"][b]["n"]}
    return out


def test_predictions(ctr_dir: Path) -> dict[str, dict[int, np.ndarray]]:
    """Saved test probabilities: model name -> training seed -> (N test,) array (the models
    and seeds as the ctr manifest records them)."""
    per_model: dict[str, dict[int, np.ndarray]] = {}
    records = require_stage(ctr_dir, "ctr")["metrics"]
    with np.load(ctr_dir / "predictions.npz", allow_pickle=False) as preds:
        for key, record in records.items():
            per_model.setdefault(record["model"], {})[record["seed"]] = preds[f"{key}/test"]
    return per_model


def build_report(cfg: EvalConfig, ctr_dir: Path, out: Path, extra: dict | None = None) -> dict:
    """Write report.json / report.md / report_buckets.png into ``out``; returns the report.

    Every metric is recomputed from the saved test predictions and the data artifact.
    """
    data_dir = Path(require_stage(ctr_dir, "ctr")["parents"]["data"]["path"])
    test = read_data(data_dir).samples.subset(TEST)
    predictions = test_predictions(ctr_dir)
    models = {name: aggregate([ctr_metrics(test["user"], test["label"], probs, test["bucket"])
                               for probs in by_seed.values()])
              for name, by_seed in predictions.items()}
    ctr_manifest = require_stage(ctr_dir, "ctr")
    records = ctr_manifest["metrics"]
    margin = ctr_manifest["config"]["ctr"].get("select_margin", 0.0)
    for name, score in valid_scores(records).items():
        models[name]["valid_auc"] = score
    base = models.get(cfg.baseline)
    for name, m in models.items():
        m["rela_impr"] = rela_impr(m["auc"], base["auc"]) if base else float("nan")
        if base and name != cfg.baseline and cfg.bootstrap_resamples:
            m["vs_baseline"] = paired_bootstrap(test["user"], test["label"], predictions[name],
                                                predictions[cfg.baseline],
                                                cfg.bootstrap_resamples)
    data_manifest = read_manifest(data_dir)
    new_frac = data_manifest["config"]["new_item_fraction"]
    report = {"protocol": "P1-cold" if new_frac > 0 else "P1", "baseline": cfg.baseline,
              "valid_best": valid_best(records, cfg.baseline, margin),
              "selection": selection_line(records, cfg.baseline, margin), "models": models,
              "data": data_manifest["metrics"], **(extra or {})}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", _finite(report))
    if cfg.plot:
        plot_bucket_auc(models, out / "report_buckets.png")
    (out / "report.md").write_text(render_markdown(report, cfg.plot))
    return report


def _finite(obj):
    """NaN -> None, so report.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(mean: float, std: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.4f} ± {std:.4f}"


def ctr_table(report: dict) -> list[str]:
    """The markdown table of CTR models: one row per model."""
    head = (["model", "valid AUC", "AUC", "gAUC", "LogLoss", "RelaImpr"]
            + [f"AUC {b}" for b in BUCKETS])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in report["models"].items():
        label = f"**{name}** (valid-best)" if name == report.get("valid_best") else name
        cells = [label, f"{m.get('valid_auc', float('nan')):.4f}", _fmt(m["auc"], m["auc_std"]),
                 _fmt(m["gauc"], m["gauc_std"]),
                 _fmt(m["logloss"], m["logloss_std"]), f"{m['rela_impr']:+.2f}%"]
        cells += [_fmt(m["buckets"][b]["auc"], m["buckets"][b]["auc_std"]) for b in BUCKETS]
        rows.append("| " + " | ".join(cells) + " |")
    sizes = next(iter(report["models"].values()))["buckets"] if report["models"] else {}
    rows.append("")
    rows.append("Test rows per bucket: " + ", ".join(f"{b} {sizes[b]['n']}" for b in sizes))
    return rows


def interval_text(vs: dict | None, key: str) -> str:
    """``+0.0011 [-0.0008, +0.0030]``: a difference to the baseline and its bootstrap interval."""
    if not vs or not math.isfinite(vs[key]):
        return "n/a"
    low, high = vs[f"{key}_interval"]
    return f"{vs[key]:+.4f} [{low:+.4f}, {high:+.4f}]"


def difference_table(report: dict) -> list[str]:
    """Each model's AUC / gAUC difference to the baseline with its bootstrap interval."""
    rows = [(name, m["vs_baseline"]) for name, m in report["models"].items()
            if m.get("vs_baseline")]
    if not rows:
        return []
    first = rows[0][1]
    lines = [f"Difference to `{report['baseline']}`, mean over the paired seeds, with a "
             f"{first['level']:.0%} interval from a paired bootstrap over test users "
             f"({first['resamples']} resamples; an interval that contains 0 means these test users "
             "cannot tell the two models apart):", "",
             "| model | ΔAUC [interval] | ΔgAUC [interval] |", "|---|---|---|"]
    lines += [f"| {name} | {interval_text(vs, 'delta_auc')} | {interval_text(vs, 'delta_gauc')} |"
              for name, vs in rows]
    return lines


def retrieval_table(retrieval: dict) -> list[str]:
    """Protocol P2: next-positive retrieval by content similarity, one row per vector source."""
    rows = ["| vectors | Recall@10 | Recall@50 | MRR |", "|---|---|---|---|"]
    for name, m in retrieval.items():
        rows.append(f"| {name} | {m['recall@10']:.4f} | {m['recall@50']:.4f} | {m['mrr']:.4f} |")
    return rows


def alignment_lines(alignment: dict) -> list[str]:
    """Stage-1 alignment figures as a two-column table."""
    rows = ["| metric | value |", "|---|---|"]
    for key, value in alignment.items():
        if isinstance(value, (int, float)):
            rows.append(f"| {key} | {value:.4f} |" if isinstance(value, float)
                        else f"| {key} | {value} |")
    return rows


def render_markdown(report: dict, with_plot: bool) -> str:
    """The human-readable report."""
    lines = ["# mimrec report", ""]
    if report.get("models"):
        seeds = next(iter(report["models"].values()))["seeds"]
        lines += [f"## CTR ({report['protocol']}, test split, mean ± std over {seeds} seeds)", "",
                  f"RelaImpr is against `{report['baseline']}`. Model choice is made on valid: "
                  f"{report['selection']}.", "", *ctr_table(report), ""]
        differences = difference_table(report)
        if differences:
            lines += [*differences, ""]
        if with_plot:
            lines += ["![AUC per popularity bucket](report_buckets.png)", ""]
    if report.get("retrieval"):
        lines += ["## Content-interest retrieval (P2, valid split)", "",
                  *retrieval_table(report["retrieval"]), ""]
    if report.get("alignment"):
        lines += ["## Stage-1 modal alignment", "", *alignment_lines(report["alignment"]), ""]
    return "\n".join(lines)


def write_alignment_report(metrics: dict, out: Path) -> dict:
    """The report of the alignment-only pipeline (protocol P3): report.json and report.md."""
    report = {"protocol": "P3", "alignment": metrics}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", _finite(report))
    (out / "report.md").write_text(render_markdown(report, with_plot=False))
    return report
