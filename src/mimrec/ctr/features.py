"""Categorical feature tables of items and users, in index space, for the CTR model.

Each feature is a *bag*: an (rows, M) matrix of vocabulary indices, 0 = padding; a single-valued
feature is a bag of width 1, a list-valued one (genres) is padded to its widest row. Item tables get
and user tables get a leading padding row, so catalogue row ``r`` is index ``r + 1`` and index 0
means "none" (behaviour padding, or an item or user the model does not know).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mimrec.data.tables import require_columns

if TYPE_CHECKING:
    from mimrec.data.config import DataConfig
    from mimrec.data.stage import DataArtifact


@dataclass
class Bag:
    """One categorical feature: an index matrix and its vocabulary."""

    name: str
    index: np.ndarray  # (rows, M) int64, 0 = padding
    vocab: list[str]  # vocab[i - 1] is the value of index i

    @property
    def num_embeddings(self) -> int:
        return len(self.vocab) + 1


@dataclass
class FeatureTables:
    """Item and user feature bags (each with the leading padding row)."""

    items: list[Bag]
    users: list[Bag]
    num_items: int  # catalogue size I (indices 1..I)
    num_users: int  # users U (indices 1..U)


def _as_list(value: object) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(value)]


def make_bag(name: str, column: pd.Series) -> Bag:
    """Index a column whose cells are scalars or lists of values (row 0 is padding)."""
    lists = [_as_list(v) for v in column]
    vocab = sorted({v for vals in lists for v in vals})
    lookup = {v: i + 1 for i, v in enumerate(vocab)}
    width = max(1, max((len(v) for v in lists), default=1))
    index = np.zeros((len(lists) + 1, width), dtype=np.int64)
    for r, vals in enumerate(lists):
        index[r + 1, : len(vals)] = [lookup[v] for v in vals]
    return Bag(name, index, vocab)


def build_feature_tables(items: pd.DataFrame, users: pd.DataFrame | None, num_users: int,
                         item_features: tuple[str, ...], user_features: tuple[str, ...]
                         ) -> FeatureTables:
    """Bags for the configured item and user columns."""
    require_columns(items, list(item_features), "items table")
    item_bags = [make_bag(f, items[f]) for f in item_features]
    user_bags: list[Bag] = []
    if users is not None:
        require_columns(users, list(user_features), "users table")
        user_bags = [make_bag(f, users[f]) for f in user_features]
    return FeatureTables(item_bags, user_bags, len(items), num_users)


def feature_tables(data: DataArtifact, data_cfg: DataConfig) -> FeatureTables:
    """Feature tables of a data artifact's catalogue and users (training and serving alike)."""
    return build_feature_tables(data.items, data.users, len(data.samples.user_ids),
                                data_cfg.item_features, data_cfg.user_features)
