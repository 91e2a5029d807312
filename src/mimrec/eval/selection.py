"""Model selection on valid: which trained model a run serves by default.

A model's valid score is the mean over its seeds of the best valid AUC of each seed's training
(the weights kept). Another model is chosen over the ID-only baseline only when its score is
higher by more than ``margin`` (``ctr.select_margin``): a gain the size of valid noise does not
make the service switch to content.

A shuffled-content control (``ModelSpec.shuffled_content``, ``ctr.shuffled_controls``: the
same model on vectors permuted across items) is never chosen. A model that has one in the run
is chosen only when it also beats its control by more than ``margin``: a gain its control gets
without true content is the content path's capacity, not content, and is no reason to serve a
model that needs the store and the encoder. The line says how the control did.

Such a model that starts from another (``ModelSpec.init_from``: every content block enters at
zero, so its start computes exactly what that model computes) also has its content switched off
by the CTR stage (:func:`to_switch_off`, used by :mod:`mimrec.ctr.stage`): its weights become its
start, its record keeps what it scored as trained (``content_off``). The kept weights are then
the start's, and its valid score is its start's (epoch 0).
"""

from __future__ import annotations

import json

import numpy as np


def best_valid_auc(record: dict, as_trained: bool = False) -> float:
    """The valid AUC of the weights a training kept: its best epoch, or its start (epoch 0)
    where its content was switched off (unless ``as_trained``)."""
    if record.get("content_off") and not as_trained:
        return record["epochs"][0]["valid_auc"]
    return max(e["valid_auc"] for e in record["epochs"])


def valid_scores(records: dict[str, dict], as_trained: bool = False) -> dict[str, float]:
    """Mean best valid AUC per model name, from the ctr manifest's per-key records (as trained:
    before any content was switched off)."""
    per_model: dict[str, list[float]] = {}
    for record in records.values():
        per_model.setdefault(record["model"], []).append(best_valid_auc(record, as_trained))
    return {name: float(np.mean(v)) for name, v in per_model.items()}


def switched_off(records: dict[str, dict]) -> dict[str, str]:
    """The models whose content was switched off, each mapped to the control it lost to."""
    return {r["model"]: r["content_off"]["control"] for r in records.values()
            if r.get("content_off")}


def to_switch_off(records: dict[str, dict], margin: float = 0.0) -> dict[str, str]:
    """The models whose content the CTR stage switches off, each mapped to its control: a model
    that starts from another (``init_from``), has a shuffled-content control in the run, and
    whose valid score (as trained) is not above the control's by more than ``margin``. Models
    already switched off are not listed again."""
    scores, pairs = valid_scores(records, as_trained=True), control_pairs(records)
    starts = {r["model"] for r in records.values() if r.get("spec", {}).get("init_from")}
    done = switched_off(records)
    return {name: control for name, control in pairs.items()
            if name in starts and name not in done and scores[name] <= scores[control] + margin}


def is_control(record: dict) -> bool:
    """Whether a trained model is a shuffled-content control (records without a spec: no)."""
    return bool(record.get("spec", {}).get("shuffled_content"))


def controls(records: dict[str, dict]) -> set[str]:
    """The names of the shuffled-content controls among a run's models."""
    return {record["model"] for record in records.values() if is_control(record)}


def control_pairs(records: dict[str, dict]) -> dict[str, str]:
    """Each model that has a shuffled-content control in the run, mapped to it: the control's
    spec is the model's with ``shuffled_content`` on (names aside)."""
    def key(spec: dict) -> str:
        return json.dumps({k: v for k, v in spec.items() if k not in ("name", "shuffled_content")},
                          sort_keys=True)

    specs = {r["model"]: r["spec"] for r in records.values() if "spec" in r}
    found = {key(spec): name for name, spec in specs.items() if spec.get("shuffled_content")}
    return {name: found[key(spec)] for name, spec in specs.items()
            if not spec.get("shuffled_content") and key(spec) in found}


def valid_best(records: dict[str, dict], baseline: str = "din", margin: float = 0.0) -> str:
    """The name of the model with the best valid score; ``baseline`` unless another beats it by
    more than ``margin``. Controls are not candidates, and a model with a control must beat it
    by more than ``margin`` too."""
    all_scores, pairs, control_names = valid_scores(records), control_pairs(records), controls(records)
    scores = {n: s for n, s in all_scores.items() if n not in control_names
              and (n not in pairs or s > all_scores[pairs[n]] + margin)}
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
    scores = valid_scores(records, as_trained=True)
    chosen = valid_best(records, baseline, margin)
    pairs = control_pairs(records)
    models = {n: s for n, s in scores.items() if n not in controls(records)}
    off = sorted(switched_off(records))
    said = (f"; content switched off in {', '.join(off)}: "
            + ("their weights are their starts" if len(off) > 1 else "its weights are its start")
            if off else "")
    if chosen == baseline and len(models) > 1:
        best = max((n for n in models if n != baseline), key=models.get)
        if best in pairs and models[best] > models[baseline] + margin:
            control = pairs[best]
            return (f"content did not beat its shuffled-content control on valid: serving "
                    f"{baseline} ({best} {models[best]:.4f}, with shuffled content ({control}) "
                    f"{scores[control]:.4f}, {baseline} {models[baseline]:.4f}: {best}'s gain "
                    f"is the content path's capacity, not content{said})")
        return (f"content did not beat the ID-only model on valid: serving {baseline} "
                f"(valid AUC {models[baseline]:.4f}; best other {models[best]:.4f}; a content "
                f"model must be ahead by more than {margin:g}{said})")
    base = f" vs {baseline} {models[baseline]:.4f}" if baseline in models else ""
    share = ""
    if chosen in pairs:
        control = pairs[chosen]
        share = (f"; with shuffled content ({control}) {scores[control]:.4f}: content's own "
                 f"share {scores[chosen] - scores[control]:+.4f}")
    return f"valid-best model: serving {chosen} (valid AUC {models[chosen]:.4f}{base}){share}{said}"
