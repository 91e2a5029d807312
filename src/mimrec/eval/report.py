"""The run report: metrics of every model over seeds (mean and std), RelaImpr against the
baseline, AUC per popularity bucket; written as ``report.json``, ``report.md`` and a PNG plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mimrec.artifacts import read_manifest, require_stage, write_json_atomic
from mimrec.data.samples import BUCKETS, TEST, VALID, count_range
from mimrec.eval.config import EvalConfig
from mimrec.eval.metrics import rela_impr
from mimrec.eval.npz_members import npz_memmaps
from mimrec.eval.plot import plot_bucket_auc, plot_training_curves
from mimrec.eval.selection import (
    control_pairs,
    selection_line,
    switched_off,
    valid_best,
    valid_scores,
)
from mimrec.eval.selection import controls as control_models
from mimrec.eval.significance import bootstrap_rows, bucket_bootstrap, paired_bootstrap
from mimrec.eval.split_rows import BucketInfo, read_buckets, read_split_rows
from mimrec.eval.streaming import count_users, split_metrics


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
    for b in per_seed[0]["buckets"]:
        mean, std = _mean_std([m["buckets"][b]["auc"] for m in per_seed])
        out["buckets"][b] = {"auc": mean, "auc_std": std, "n": per_seed[0]["buckets"][b]["n"]}
    return out


PROTOCOL_NOTES = {
    "P4": "Behaviour is simulated (protocol P4: real Fashion-MNIST product photos, simulated "
          "users and clicks with a known click probability). It shows whether a model extracts "
          "content interest where it exists, not that it lifts a real site's CTR.",
}


def protocol_name(data_config: dict) -> str:
    """The protocol of ``shared/protocol.md`` a data stage config built."""
    if data_config.get("dataset") == "p4":
        return "P4"
    name = "P1"
    if data_config.get("new_item_fraction", 0) > 0:
        name = "P1-cold v2" if data_config.get("new_item_launch") == "valid" else "P1-cold"
    end = data_config.get("window_end", 1.0)
    if end < 1:  # a rolling time window: the test share ends before the log does
        start = data_config["train_fraction"] + data_config["valid_fraction"]
        name += f" (test window {start:.2f}-{end:.2f} of the log)"
    return name


def split_predictions(ctr_dir: Path, split: str = "test") -> dict[str, dict[int, np.ndarray]]:
    """Saved probabilities of one split: model name -> training seed -> (N rows,) read-only
    memory map of ``predictions.npz`` (the models and seeds as the ctr manifest records them)."""
    per_model: dict[str, dict[int, np.ndarray]] = {}
    records = require_stage(ctr_dir, "ctr")["metrics"]
    preds = npz_memmaps(ctr_dir / "predictions.npz")
    for key, record in records.items():
        if f"{key}/{split}" not in preds:
            continue
        if "model" in record:
            name, seed = record["model"], record["seed"]
        else:  # a ctr artifact written before records named their model: "<name>-seed<k>"
            name, seed = key.rsplit("-seed", 1)
        per_model.setdefault(name, {})[int(seed)] = preds[f"{key}/{split}"]
    return per_model


def test_predictions(ctr_dir: Path) -> dict[str, dict[int, np.ndarray]]:
    """Saved test probabilities: model name -> training seed -> (N test,) array."""
    return split_predictions(ctr_dir, "test")


def oracle_metrics(rows: dict[str, np.ndarray], names: tuple[str, ...] = BUCKETS,
                   cfg: EvalConfig | None = None) -> dict | None:
    """Metrics of the true click probability on these rows (None unless every row has one)."""
    cfg = cfg or EvalConfig()
    prob = rows["click_probability"]
    if not len(prob) or not np.isfinite(prob).all():
        return None
    return split_metrics(rows["user"], rows["label"], prob, rows["bucket"], names,
                         cfg.stream_above_rows, cfg.chunk_rows)


def split_report(cfg: EvalConfig, rows: dict[str, np.ndarray],
                 predictions: dict[str, dict[int, np.ndarray]],
                 names: tuple[str, ...] = BUCKETS, controls: dict[str, str] | None = None
                 ) -> dict:
    """Metrics of every model on one split's rows: means over seeds, RelaImpr, and against the
    baseline the paired-bootstrap intervals, overall and per bucket; the oracle when known.

    A split of more than ``cfg.stream_above_rows`` rows is scored by the streaming metrics
    (predictions read a chunk at a time), and one of more than ``cfg.bootstrap_rows`` rows is
    bootstrapped on a random sample of its users (``vs_baseline["sample"]``: its rows and users).

    ``controls`` maps a model to its shuffled-content control (:func:`control_pairs`): such a
    model's ``vs_control`` is its paired difference to the control, content's own share.

    Returns ``{"models": {name: metrics}, "oracle": metrics or None}``; a model's
    ``oracle_gap_closed`` is the share of the baseline-to-oracle AUC gap it closes.
    """
    user, label, bucket = rows["user"], rows["label"], rows["bucket"]
    models = {name: aggregate([split_metrics(user, label, probs, bucket, names,
                                             cfg.stream_above_rows, cfg.chunk_rows)
                               for probs in by_seed.values()])
              for name, by_seed in predictions.items()}
    base = models.get(cfg.baseline)
    oracle = oracle_metrics(rows, names, cfg)
    for m in models.values():
        m["rela_impr"] = rela_impr(m["auc"], base["auc"]) if base else float("nan")
        if oracle and base:
            m["oracle_gap_closed"] = (m["auc"] - base["auc"]) / (oracle["auc"] - base["auc"])
    if base and cfg.bootstrap_resamples and len(models) > 1:
        _add_intervals(cfg, models, rows, predictions, names, controls or {})
    return {"models": models, "oracle": oracle}


def _add_intervals(cfg: EvalConfig, models: dict[str, dict], rows: dict[str, np.ndarray],
                   predictions: dict[str, dict[int, np.ndarray]], names: tuple[str, ...],
                   controls: dict[str, str]) -> None:
    """Each model's paired-bootstrap difference to the baseline, overall (``vs_baseline``) and
    per bucket (``vs_baseline_buckets``); on a sample of the users when the split is larger
    than ``cfg.bootstrap_rows``."""
    user, label, bucket = rows["user"], rows["label"], rows["bucket"]
    n, sample = len(label), None
    users = count_users(user, cfg.chunk_rows) if n > cfg.stream_above_rows else \
        int(len(np.unique(user)))
    if n > cfg.bootstrap_rows:
        kept = bootstrap_rows(user, cfg.bootstrap_rows)
        user, label, bucket = user[kept], label[kept], bucket[kept]
        predictions = {name: {s: p[kept] for s, p in by_seed.items()}
                       for name, by_seed in predictions.items()}
        sample = {"rows": len(kept), "users": int(len(np.unique(user)))}
    reference = predictions[cfg.baseline]
    for name, m in models.items():
        if name == cfg.baseline:
            continue
        vs = paired_bootstrap(user, label, predictions[name], reference, cfg.bootstrap_resamples)
        if vs is not None:
            vs |= {"n": n, "users": users, "resolved": _resolved(vs)}
            if sample:
                vs["sample"] = sample
        m["vs_baseline"] = vs
        m["vs_baseline_buckets"] = bucket_bootstrap(user, label, bucket, predictions[name],
                                                    reference, cfg.bootstrap_resamples,
                                                    names=names)
        control = controls.get(name)
        if control in predictions:
            vs = paired_bootstrap(user, label, predictions[name], predictions[control],
                                  cfg.bootstrap_resamples)
            m["vs_control"] = vs and {**vs, "control": control, "resolved": _resolved(vs)}


def _resolved(vs: dict) -> bool:
    """Whether a paired difference's AUC interval excludes 0."""
    low, high = vs["delta_auc_interval"]
    return bool(low > 0 or high < 0)


def build_report(cfg: EvalConfig, ctr_dir: Path, out: Path, extra: dict | None = None) -> dict:
    """Write report.json / report.md / report_buckets.png / report_curves.png (train loss and
    valid AUC per epoch of every model) into ``out``; returns the report.

    Every metric is recomputed from the saved valid and test predictions and the data artifact.
    The report's ``models`` and ``oracle`` are the test split's; ``valid`` holds the same for
    the valid split.
    """
    data_dir = Path(require_stage(ctr_dir, "ctr")["parents"]["data"]["path"])
    buckets = read_buckets(data_dir)
    names = buckets.names
    test_rows = read_split_rows(data_dir, TEST)
    ctr_manifest = require_stage(ctr_dir, "ctr")
    records = ctr_manifest["metrics"]
    off = switched_off(records)  # no content share: their predictions are their starts'
    controls = {m: c for m, c in control_pairs(records).items() if m not in off}
    test = split_report(cfg, test_rows, split_predictions(ctr_dir, "test"), names, controls)
    summary = bucket_summary(buckets, test_rows["bucket"])
    del test_rows
    valid_predictions = split_predictions(ctr_dir, "valid")
    valid = split_report(cfg, read_split_rows(data_dir, VALID), valid_predictions, names,
                         controls) if valid_predictions else None
    margin = ctr_manifest["config"]["ctr"].get("select_margin", 0.0)
    for name, score in valid_scores(records).items():
        if name in test["models"]:
            test["models"][name]["valid_auc"] = score
    data_manifest = read_manifest(data_dir)
    protocol = protocol_name(data_manifest["config"])
    report = {"protocol": protocol, "baseline": cfg.baseline,
              "valid_best": valid_best(records, cfg.baseline, margin),
              "selection": selection_line(records, cfg.baseline, margin),
              "controls": sorted(control_models(records)),
              "content_off": content_off_summary(records), **test, "valid": valid,
              "data": data_manifest["metrics"], "buckets": summary,
              **(extra or {})}
    if protocol in PROTOCOL_NOTES:
        report["note"] = PROTOCOL_NOTES[protocol]
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", _finite(report))
    curves = False
    if cfg.plot:
        plot_bucket_auc(test["models"], out / "report_buckets.png")
        curves = plot_training_curves(records, out / "report_curves.png")
    (out / "report.md").write_text(render_markdown(report, cfg.plot, curves))
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


def bucket_summary(buckets: BucketInfo, test_bucket: np.ndarray) -> dict[str, dict]:
    """Each popularity bucket's train-count range and test rows (``test_bucket``: the test
    rows' bucket codes), plus the merge notes."""
    test = np.bincount(np.asarray(test_bucket, np.int64), minlength=len(buckets.names))
    return {"edges": {b: {"train_count": count_range(buckets.lows, i), "test_rows": int(test[i])}
                      for i, b in enumerate(buckets.names)},
            "notes": list(buckets.notes)}


def _fmt(mean: float, std: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.4f} ± {std:.4f}"


ORACLE = "oracle (true click probability)"


def ctr_table(report: dict, split: str = "Test") -> list[str]:
    """The markdown table of CTR models: one row per model (with its valid AUC when the
    selection recorded one), the oracle's row when known."""
    with_valid = any("valid_auc" in m for m in report["models"].values())
    head = (["model"] + (["valid AUC"] if with_valid else []) + ["AUC", "gAUC", "LogLoss",
                                                                   "RelaImpr"]
            + [f"AUC {b}" for b in _names(report)])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in report["models"].items():
        label = f"**{name}** (valid-best)" if name == report.get("valid_best") else name
        valid = [f"{m.get('valid_auc', float('nan')):.4f}"] if with_valid else []
        cells = [label, *valid, _fmt(m["auc"], m["auc_std"]), _fmt(m["gauc"], m["gauc_std"]),
                 _fmt(m["logloss"], m["logloss_std"]), f"{m['rela_impr']:+.2f}%"]
        cells += [_fmt(m["buckets"][b]["auc"], m["buckets"][b]["auc_std"]) for b in _names(report)]
        rows.append("| " + " | ".join(cells) + " |")
    oracle = report.get("oracle")
    if oracle:
        cells = [ORACLE, *([""] if with_valid else []), f"{oracle['auc']:.4f}",
                 f"{oracle['gauc']:.4f}", f"{oracle['logloss']:.4f}", ""]
        cells += [_fmt(oracle["buckets"][b]["auc"], 0.0).removesuffix(" ± 0.0000")
                  for b in _names(report)]
        rows.append("| " + " | ".join(cells) + " |")
    sizes = next(iter(report["models"].values()))["buckets"] if report["models"] else {}
    edges = report.get("buckets", {}).get("edges", {})
    rows.append("")
    rows.append(f"{split} rows per bucket (item's train impressions): " + ", ".join(
        f"{b} ({edges[b]['train_count']}) {sizes[b]['n']:,}" if b in edges else
        f"{b} {sizes[b]['n']:,}" for b in sizes))
    rows += [f"Buckets: {note}." for note in report.get("buckets", {}).get("notes", [])]
    return rows


def _names(report: dict) -> tuple[str, ...]:
    """The report's bucket names (the fixed four in reports written before they varied)."""
    models = report.get("models") or {}
    return tuple(next(iter(models.values()))["buckets"]) if models else BUCKETS


def interval_text(vs: dict | None, key: str) -> str:
    """``+0.0011 [-0.0008, +0.0030]``: a difference to the baseline and its bootstrap interval."""
    if not vs or not math.isfinite(vs[key]):
        return "n/a"
    low, high = vs[f"{key}_interval"]
    return f"{vs[key]:+.4f} [{low:+.4f}, {high:+.4f}]"


def difference_table(report: dict, split: str = "test") -> list[str]:
    """Each model's AUC / gAUC difference to the baseline with its bootstrap interval."""
    rows = [(name, m["vs_baseline"]) for name, m in report["models"].items()
            if m.get("vs_baseline")]
    if not rows:
        return []
    first = rows[0][1]
    lines = [f"Difference to `{report['baseline']}`, mean over the paired seeds, with a "
             f"{first['level']:.0%} interval from a paired bootstrap over {split} users "
             f"({first['resamples']} resamples; an interval that contains 0 means these {split} users "
             "cannot tell the two models apart)" + _sample_note(first) + ":", "",
             "| model | ΔAUC [interval] | ΔgAUC [interval] |", "|---|---|---|"]
    lines += [f"| {name} | {interval_text(vs, 'delta_auc')} | {interval_text(vs, 'delta_gauc')} |"
              for name, vs in rows]
    return lines


def content_off_summary(records: dict[str, dict]) -> dict[str, dict]:
    """Per model whose content the CTR stage switched off: its control, the valid scores that
    decided it, and its test AUC / gAUC as trained (means over its seeds)."""
    out: dict[str, dict] = {}
    for record in records.values():
        off = record.get("content_off")
        if off:
            entry = out.setdefault(record["model"], {
                "control": off["control"], "start": off["start"], "margin": off["margin"],
                "valid_auc": off["valid_auc"],
                "control_valid_auc": off["control_valid_auc"], "test_as_trained": []})
            entry["test_as_trained"].append(off["as_trained"]["test"])
    for entry in out.values():
        tests = entry.pop("test_as_trained")
        entry["test_as_trained"] = {k: float(np.mean([t[k] for t in tests]))
                                    for k in ("auc", "gauc")}
    return out


def content_off_lines(report: dict) -> list[str]:
    """One sentence per model whose content was switched off, with what it scored as trained."""
    return [f"Content switched off in `{name}`: as trained its valid AUC was {e['valid_auc']:.4f} "
            f"against {e['control_valid_auc']:.4f} for its shuffled-content control "
            f"`{e['control']}` (it must be ahead by more than {e['margin']:g}), so its weights "
            f"are its `{e['start']}` start and its rows above equal `{e['start']}`'s; as trained "
            f"its test AUC was "
            f"{e['test_as_trained']['auc']:.4f} and gAUC {e['test_as_trained']['gauc']:.4f}."
            for name, e in (report.get("content_off") or {}).items()]


def content_share_lines(report: dict) -> list[str]:
    """Each model's difference to its shuffled-content control (the same model reading
    another item's vectors): what content itself adds, with its interval; and the models
    whose content was switched off."""
    rows = [(name, m["vs_control"]) for name, m in report["models"].items()
            if m.get("vs_control")]
    if not rows:
        return content_off_lines(report)
    lines = ["Content's own share: each model against its shuffled-content control (the same "
             "model trained on vectors permuted across items; what the control gains over the "
             "baseline is the content path's capacity, not content):", "",
             "| model | control | ΔAUC [interval] | ΔgAUC [interval] | resolved |",
             "|---|---|---|---|---|"]
    for name, vs in rows:
        lines.append(f"| {name} | {vs['control']} | {interval_text(vs, 'delta_auc')} | "
                     f"{interval_text(vs, 'delta_gauc')} | {'yes' if vs['resolved'] else 'no'} |")
    off = content_off_lines(report)
    return lines + ([""] + off if off else [])


def _sample_note(vs: dict) -> str:
    """How the bootstrap was subsampled, when it was (a large split)."""
    sample = vs.get("sample")
    if not sample:
        return ""
    return (f"; bootstrapped on a random {sample['users']:,} of the {vs['users']:,} users "
            f"({sample['rows']:,} of {vs['n']:,} rows), so the interval is wider than all "
            "users' would be")


def bucket_difference_table(report: dict) -> list[str]:
    """Each model's AUC difference to the baseline overall and per bucket: the rows and users
    behind it, its paired-bootstrap interval, and whether the interval excludes 0."""
    lines = []
    for name, m in report["models"].items():
        if not m.get("vs_baseline"):
            continue
        if not lines:
            lines = [f"AUC difference to `{report['baseline']}` per popularity bucket (paired "
                     "bootstrap over the bucket's users; resolved = the 95% interval excludes 0):",
                     "", "| model | bucket | rows (users) | ΔAUC [95% interval] | resolved |",
                     "|---|---|---|---|---|"]
        per = {"all": m["vs_baseline"], **m.get("vs_baseline_buckets", {})}
        for bucket, vs in per.items():
            users = f" ({vs['users']:,} users)" if vs and "users" in vs else ""
            size = f"{vs['n']:,}{users}" if vs else f"{m['buckets'][bucket]['n']:,}"
            resolved = "n/a" if not vs else ("yes" if vs["resolved"] else "no")
            lines.append(f"| {name} | {bucket} | {size} | {interval_text(vs, 'delta_auc')} "
                         f"| {resolved} |")
    return lines


def resolution_lines(report: dict) -> list[str]:
    """In words: which of each model's differences to the baseline these rows can resolve."""
    lines = []
    for name, m in report["models"].items():
        vs = m.get("vs_baseline")
        if not vs:
            continue
        checks = {"AUC": vs["resolved"],
                  "gAUC": not vs["delta_gauc_interval"][0] <= 0 <= vs["delta_gauc_interval"][1]}
        checks |= {f"{b} AUC": bool(r and r["resolved"])
                   for b, r in m.get("vs_baseline_buckets", {}).items()}
        yes = [k for k, ok in checks.items() if ok]
        no = [k for k, ok in checks.items() if not ok]
        lines.append(f"- `{name}` vs `{report['baseline']}`: resolved (interval excludes 0): "
                     f"{', '.join(yes) or 'none'}; not resolved (interval contains 0: these rows "
                     f"cannot tell the two apart): {', '.join(no) or 'none'}.")
    return lines


def oracle_lines(report: dict) -> list[str]:
    """The oracle's AUC and the share of the baseline-to-oracle gap each model closes."""
    oracle = report.get("oracle")
    if not oracle:
        return []
    closed = ", ".join(f"`{name}` {m['oracle_gap_closed']:+.1%}"
                       for name, m in report["models"].items()
                       if name != report["baseline"] and "oracle_gap_closed" in m)
    return [f"Oracle (the true click probability, known because behaviour is simulated) on the "
            f"same rows: AUC {oracle['auc']:.4f}, gAUC {oracle['gauc']:.4f}. Share of the "
            f"`{report['baseline']}`-to-oracle AUC gap closed: {closed or 'n/a'}."]


def split_section(report: dict, split: str) -> list[str]:
    """Tables of one split: metrics, differences with intervals, resolution, oracle."""
    lines = [*ctr_table(report, split), ""]
    for block in (difference_table(report, split.lower()), content_share_lines(report),
                  bucket_difference_table(report), resolution_lines(report),
                  oracle_lines(report)):
        if block:
            lines += [*block, ""]
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


def render_markdown(report: dict, with_plot: bool, with_curves: bool = False) -> str:
    """The human-readable report (``with_curves``: show report_curves.png)."""
    lines = ["# mimrec report", ""]
    if report.get("models"):
        seeds = next(iter(report["models"].values()))["seeds"]
        lines += [f"## CTR ({report['protocol']}, test split, mean ± std over {seeds} seeds)", ""]
        if report.get("note"):
            lines += [f"**{report['note']}**", ""]
        lines += [f"RelaImpr is against `{report['baseline']}`. Model choice is made on valid: "
                  f"{report['selection']}.", "", *split_section(report, "Test")]
        if with_plot:
            lines += ["![AUC per popularity bucket](report_buckets.png)", ""]
        if with_curves:
            lines += ["Training curves (train loss and valid AUC per epoch; epoch 0 is the "
                      "starting weights of a model started from another):", "",
                      "![Training curves](report_curves.png)", ""]
    if report.get("valid") and report["valid"]["models"]:
        lines += [f"## CTR ({report['protocol']}, valid split: where choices are made)", "",
                  *split_section({"baseline": report["baseline"], **report["valid"]}, "Valid")]
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
