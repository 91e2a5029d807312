"""The data stage: load and validate a dataset, build P1 samples, write them as an artifact.

Artifact files: ``samples.npz`` (numeric arrays only), ``items.parquet``, ``users.parquet`` (when
the data has users), ``manifest.json`` (sizes, positive rates, bucket sizes, build speed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mimrec.artifacts import require_stage, stage_dir, write_manifest
from mimrec.data.config import DataConfig
from mimrec.data.load import load_dataset
from mimrec.data.samples import BUCKETS, SPLITS, Samples, build_samples
from mimrec.serialize import to_dict


@dataclass
class DataArtifact:
    """What later stages read from a data artifact."""

    folder: Path
    samples: Samples
    items: pd.DataFrame
    users: pd.DataFrame | None


def sample_stats(samples: Samples) -> dict:
    """Per-split size, positive rate, bucket sizes and mean history length."""
    stats = {}
    for name, code in SPLITS.items():
        m = samples.split == code
        stats[name] = {
            "events": int(m.sum()),
            "positive_rate": float(samples.label[m].mean()) if m.any() else float("nan"),
            "mean_history": float((samples.history[m] >= 0).sum(1).mean()) if m.any() else 0.0,
            "buckets": {b: int((samples.bucket[m] == i).sum()) for i, b in enumerate(BUCKETS)},
        }
    stats["new_items"] = int(samples.new_item.sum())
    return stats


def run_data(cfg: DataConfig, out: Path, text_fields: tuple[str, ...] = ()) -> DataArtifact:
    """Load, validate and split the dataset of ``cfg`` into ``out`` (an artifact folder).

    ``text_fields`` are the item columns the encoder reads: their absence is a data error here.
    """
    ds = load_dataset(cfg, text_fields)
    start = time.perf_counter()
    samples = build_samples(ds, cfg)
    seconds = time.perf_counter() - start
    with stage_dir(out) as tmp:
        samples.save(tmp / "samples.npz")
        ds.items.to_parquet(tmp / "items.parquet", index=False)
        if ds.users is not None:
            ds.users.to_parquet(tmp / "users.parquet", index=False)
        metrics = {"dataset": ds.name, "build_seconds": seconds,
                   "events_per_second": len(ds.interactions) / max(seconds, 1e-9),
                   **sample_stats(samples)}
        write_manifest(tmp, "data", to_dict(cfg), metrics=metrics, inputs=ds.sources)
    return DataArtifact(out, samples, ds.items, ds.users)


def read_data(folder: Path) -> DataArtifact:
    """Read a finished data artifact."""
    require_stage(folder, "data")
    users_path = folder / "users.parquet"
    users = pd.read_parquet(users_path) if users_path.is_file() else None
    return DataArtifact(folder, Samples.load(folder / "samples.npz"),
                        pd.read_parquet(folder / "items.parquet"), users)

