"""The data stage: load and validate a dataset, build P1 samples, write them as an artifact.

Artifact files: ``samples/`` (the compact samples in shards, :mod:`mimrec.data.sample_shards`),
``items.parquet``, ``users.parquet`` (when the data has users), ``manifest.json`` (sizes, positive
rates, bucket sizes, build speed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mimrec.artifacts import require_stage, stage_dir, write_manifest
from mimrec.data.config import DataConfig
from mimrec.data.content import ContentNeeds, check_features, content_mask, table_source
from mimrec.data.load import load_dataset
from mimrec.data.sample_shards import read_samples, write_samples
from mimrec.data.samples import SPLITS, Samples, build_samples, count_range
from mimrec.errors import DataError
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
            "mean_history": float(samples.hist_len[m].mean()) if m.any() else 0.0,
            "buckets": {b: int((samples.bucket[m] == i).sum())
                        for i, b in enumerate(samples.buckets)},
        }
    stats["new_items"] = int(samples.new_item.sum())
    lows = tuple(int(x) for x in samples.bucket_lows)
    stats["bucket_edges"] = {b: count_range(lows, i) for i, b in enumerate(samples.buckets)}
    stats["bucket_notes"] = [str(n) for n in samples.bucket_notes]
    return stats


def check_splits(samples: Samples, name: str, both_classes: tuple[str, ...] = ("train",)) -> None:
    """Refuse data too small to form train / valid / test: every split needs an event, and the
    splits in ``both_classes`` a click and a non-click (what training and its AUC need).

    The data stage asks this of train; the CTR stage of every split (early stopping on valid AUC
    and the test report need both classes), before it trains anything.
    """
    counts = {split: (int(((samples.split == code) & (samples.label > 0)).sum()),
                      int(((samples.split == code) & (samples.label == 0)).sum()))
              for split, code in SPLITS.items()}
    short = [split for split, (pos, neg) in counts.items()
             if pos + neg == 0 or (split in both_classes and (pos == 0 or neg == 0))]
    if short:
        need = ("a click and a non-click" if short[0] in both_classes else "at least one event")
        shown = ", ".join(f"{s} {p} clicks / {n} non-clicks" for s, (p, n) in counts.items())
        raise DataError(f"{name}: too small to form train/valid/test: {short[0]} needs {need} "
                        f"({shown}); add events or change data.train_fraction / "
                        "data.valid_fraction")


def run_data(cfg: DataConfig, out: Path, text_fields: tuple[str, ...] = (),
             needs: ContentNeeds | None = None,
             both_classes: tuple[str, ...] = ("train",)) -> DataArtifact:
    """Load, validate and split the dataset of ``cfg`` into ``out`` (an artifact folder).

    Everything later stages need is checked here, before anything trains: the feature columns,
    the content the switched-on towers read (``needs``; by default the text of ``text_fields``)
    and that every split has an event, and those in ``both_classes`` a click and a non-click
    (the pipeline asks it of every split: CTR early stopping and the report need both). Items
    without any usable content are
    counted (``no_content_items`` in the manifest); see :mod:`mimrec.data.content`.
    """
    needs = needs or ContentNeeds(text_fields, use_text=bool(text_fields))
    ds = load_dataset(cfg, needs.text_fields)
    check_features(ds, cfg.item_features, cfg.user_features)
    has_content = content_mask(ds.items, needs, table_source(ds, "items"))
    start = time.perf_counter()
    samples = build_samples(ds, cfg)
    seconds = time.perf_counter() - start
    check_splits(samples, ds.name, both_classes)
    with stage_dir(out) as tmp:
        write_samples(samples, tmp / "samples")
        ds.items.to_parquet(tmp / "items.parquet", index=False)
        if ds.users is not None:
            ds.users.to_parquet(tmp / "users.parquet", index=False)
        metrics = {"dataset": ds.name, "build_seconds": seconds,
                   "events_per_second": ds.num_events / max(seconds, 1e-9),
                   "no_content_items": int((~has_content).sum()),
                   "no_content_examples": ds.items["item_id"][~has_content].head(5).tolist(),
                   **sample_stats(samples)}
        write_manifest(tmp, "data", to_dict(cfg), metrics=metrics, inputs=ds.sources)
    return DataArtifact(out, samples, ds.items, ds.users)


def read_data(folder: Path) -> DataArtifact:
    """Read a finished data artifact."""
    require_stage(folder, "data")
    if not (folder / "samples").is_dir():
        raise DataError(f"{folder}: a data artifact of an older mimrec (samples.npz with full "
                        "history matrices); rerun `mimrec data` to rebuild it as shards")
    users_path = folder / "users.parquet"
    users = pd.read_parquet(users_path) if users_path.is_file() else None
    return DataArtifact(folder, read_samples(folder / "samples"),
                        pd.read_parquet(folder / "items.parquet"), users)

