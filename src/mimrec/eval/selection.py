"""Model selection on valid: which trained model a run serves by default.

A model's valid score is the mean over its seeds of the best valid AUC of each seed's training
(the weights kept). Another model is chosen over the ID-only baseline only when its score is
higher by more than ``margin`` (``ctr.select_margin``): a gain the size of valid noise does not
make the service switch to content.

A shuffled-content control (``ModelSpec.shuffled_content``, the ``ciubm_shuffled`` preset) is
never chosen; when a run has one, the line says how much of the chosen model's valid gain over
the baseline it reaches without true content.
"""

from __future__ import annotations

import numpy as np


def best_valid_auc(record: dict) -> float:
    """The valid AUC of the weights a training kept (its best epoch)."""
    return max(e["valid_auc"] for e in record["epochs"])


def valid_scores(records: dict[str, dict]) -> dict[str, float]:
    """Mean best valid AUC per model name, from the ctr manifest's per-key records."""
    per_model: dict[str, list[float]] = {}
    for record in records.values():
        per_model.setdefault(record["model"], []).append(best_valid_auc(record))
    return {name: float(np.mean(v)) for name, v in per_model.items()}


def is_control(record: dict) -> bool:
    """Whether a trained model is a shuffled-content control (records without a spec: no)."""
    return bool(record.get("spec", {}).get("shuffled_content"))


def controls(records: dict[str, dict]) -> set[str]:
    """The names of the shuffled-content controls among a run's models."""
    return {record["model"] for record in records.values() if is_control(record)}


def valid_best(records: dict[str, dict], baseline: str = "din", margin: float = 0.0) -> str:
    """The name of the model with the best valid score; ``baseline`` unless another beats it by
    more than ``margin``. Controls are not candidates."""
    scores = {n: s for n, s in valid_scores(records).items() if n not in controls(records)}
    if not scores:
        raise ValueError("no trained model to choose from")
    top = max(scores.values())
    if baseline in scores and scores[baseline] + margin >= top:
        return baseline
    return next(name for name, score in scores.items() if score == top)


def best_seed(records: dict[str, dict], name: str) -> str:
    """The key (``<model>-seed<k>``) of a model's seed with the best valid AUC."""
    keys = [k for k, r in records.items() if r["model"] == name]
    return max(keys, key=lambda k: best_valid_auc(records[k]))


def selection_line(records: dict[str, dict], baseline: str = "din", margin: float = 0.0) -> str:
    """One line on what valid chose, e.g. ``content did not beat the ID-only model on valid:
    serving din``."""
    scores = valid_scores(records)
    chosen = valid_best(records, baseline, margin)
    control = _control_note(scores, controls(records), chosen, baseline)
    scores = {n: s for n, s in scores.items() if n not in controls(records)}
    if chosen == baseline and len(scores) > 1:
        return (f"content did not beat the ID-only model on valid: serving {baseline} "
                f"(valid AUC {scores[baseline]:.4f}; best other "
                f"{max(s for n, s in scores.items() if n != baseline):.4f}; a content model "
                f"must be ahead by more than {margin:g})")
    base = f" vs {baseline} {scores[baseline]:.4f}" if baseline in scores else ""
    return f"valid-best model: serving {chosen} (valid AUC {scores[chosen]:.4f}{base}){control}"


def _control_note(scores: dict[str, float], control_names: set[str], chosen: str,
                  baseline: str) -> str:
    """``; with shuffled content (ciubm_shuffled) 0.7190: content's own share +0.0006`` when
    the chosen model is not the baseline and the run has a control, else empty."""
    if chosen == baseline or baseline not in scores or not control_names:
        return ""
    name = max(control_names, key=lambda n: scores[n])
    return (f"; with shuffled content ({name}) {scores[name]:.4f}: content's own share "
            f"{scores[chosen] - scores[name]:+.4f}")
