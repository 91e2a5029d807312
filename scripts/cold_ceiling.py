"""Print the content ceiling of a run's cold bucket (see mimrec.eval.cold_ceiling).

Usage: .venv/bin/python scripts/cold_ceiling.py RUN    (a P1-cold run folder, e.g. runs/cold)

Reads RUN/data and every vector store under RUN/index (raw, pretrain, csft); writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mimrec.artifacts import require_stage
from mimrec.ctr.features import feature_tables
from mimrec.data.config import DataConfig
from mimrec.data.stage import read_data
from mimrec.errors import MimrecError
from mimrec.eval.cold_ceiling import cold_ceiling, multi_hot
from mimrec.serialize import from_dict
from mimrec.store.center import RepresentationCenter


def main(run: Path) -> None:
    data_cfg = from_dict(DataConfig, require_stage(run / "data", "data")["config"])
    data = read_data(run / "data")
    tables = feature_tables(data, data_cfg)
    features = {"item features (" + ", ".join(b.name for b in tables.items) + ")":
                np.hstack([multi_hot(b.index) for b in tables.items])}
    ids = data.items["item_id"].to_numpy()
    for source in ("raw", "pretrain", "csft"):
        store = run / "index" / source
        if store.is_dir():
            vectors = RepresentationCenter(store).padded_table(ids).numpy()[1:]
            features[f"content vectors: {source}"] = vectors / np.linalg.norm(
                vectors, axis=1, keepdims=True).clip(1e-12)
    result = cold_ceiling(data.samples, features)
    print(f"test rows of the cold bucket: {int(result.pop('cold_rows'))}")
    print("| score of a cold test row | AUC |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value:.4f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        main(Path(sys.argv[1]))
    except (MimrecError, ValueError) as exc:
        sys.exit(f"error: {exc}")
