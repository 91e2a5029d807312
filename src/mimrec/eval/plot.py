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
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
