"""Pick the loader the data config names."""

from __future__ import annotations

from mimrec.data.config import DataConfig
from mimrec.data.fashion import FASHION_DIR
from mimrec.data.files import load_files
from mimrec.data.movielens import load_movielens
from mimrec.data.p4 import load_p4
from mimrec.data.tables import Dataset
from mimrec.errors import MimrecError


def load_dataset(cfg: DataConfig, text_fields: tuple[str, ...]) -> Dataset:
    """Load the dataset of ``cfg`` in standard form; ``text_fields`` must be item columns."""
    match cfg.dataset:
        case "movielens":
            return load_movielens(cfg.positive_rating, text_fields, cfg.movielens_kg)
        case "files":
            return load_files(cfg.path, cfg.positive_rating, text_fields)
        case "p4":
            return load_p4(cfg.p4, text_fields, cfg.path or FASHION_DIR)
    raise MimrecError(f"data.dataset = {cfg.dataset!r} has no interaction tables; "
                      "it runs its own pipeline (see configs/fashion.toml)")
