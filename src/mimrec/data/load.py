"""Pick the loader the data config names."""

from __future__ import annotations

from mimrec.data.config import DataConfig
from mimrec.data.files import load_files
from mimrec.data.movielens import load_movielens
from mimrec.data.tables import Dataset


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the dataset of ``cfg`` in standard form."""
    if cfg.dataset == "movielens":
        return load_movielens(cfg.positive_rating, cfg.text_fields)
    return load_files(cfg.path, cfg.positive_rating, cfg.text_fields)
