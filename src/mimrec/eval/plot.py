"""The PNG of test AUC per item-popularity bucket per model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mimrec.data.samples import BUCKETS  # noqa: E402


def plot_bucket_auc(models: dict[str, dict], path: Path) -> None:
    """Grouped bars: one group per bucket, one bar per model, error bars = std over seeds."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(models), 1)
    names = tuple(next(iter(models.values()))["buckets"]) if models else BUCKETS
    x = np.arange(len(names))
    for i, (name, m) in enumerate(models.items()):
        means = [m["buckets"][b]["auc"] for b in names]
        stds = [m["buckets"][b]["auc_std"] for b in names]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, means, width, yerr=stds, label=name,
               capsize=3)
    sizes = next(iter(models.values()))["buckets"] if models else {}
    ax.set_xticks(x, [f"{b}\n(n={sizes[b]['n']})" if sizes else b for b in names])
    ax.set_ylabel("test AUC")
    ax.set_ylim(0.5, None)
    ax.set_title("AUC per item-popularity bucket")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Lay out ``fig`` and write it to ``path`` as a PNG, atomically (temp file, then rename)."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def plot_training_curves(records: dict[str, dict], path: Path) -> bool:
    """Two panels, train loss and valid AUC per epoch, one line per trained model and seed
    (colour = model, line style = seed; epoch 0 = the starting weights of a model that starts
    from another). ``records``: the ctr manifest's per-model records, each with ``epochs``.
    Returns False (and writes nothing) when no record has an epoch history."""
    curves = {key: r["epochs"] for key, r in records.items() if r.get("epochs")}
    if not curves:
        return False
    model_of = {key: r.get("model", key.rsplit("-seed", 1)[0]) for key, r in records.items()}
    names = sorted(set(model_of.values()))
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    styles = ("-", "--", ":", "-.")
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (key, epochs) in enumerate(curves.items()):
        seed = records[key].get("seed", i)
        style = {"color": colours[model_of[key]], "linestyle": styles[int(seed) % len(styles)],
                 "marker": "o", "markersize": 3}
        trained = [e for e in epochs if e.get("train_loss") is not None]
        loss_ax.plot([e["epoch"] for e in trained], [e["train_loss"] for e in trained],
                     label=key, **style)
        auc_ax.plot([e["epoch"] for e in epochs], [e["valid_auc"] for e in epochs], label=key,
                    **style)
    loss_ax.set(xlabel="epoch", ylabel="train loss (BCE)", title="train loss")
    auc_ax.set(xlabel="epoch", ylabel="valid AUC", title="valid AUC (early stopping)")
    for ax in (loss_ax, auc_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    auc_ax.legend(fontsize=7)
    save_figure(fig, path)
    return True
