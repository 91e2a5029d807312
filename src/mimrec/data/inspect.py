"""Inspect a folder of generic tables (see :mod:`mimrec.data.files`) and say which columns can be
what: text the encoder reads, categorical CTR features, the image, the attribute tokens.

The rules, in the order they are applied to each items column (other than ``item_id``):

* ``image`` is the image column (bytes or a path, relative to the data folder);
  ``attributes`` the attribute tokens (on only when some token is shared by two items).
* A column holding lists is a multi-valued categorical feature (and text).
* A string column whose values are mostly distinct (more than half of the items) or long (more
  than 4 words on average) is text the encoder reads.
* Any other string, integer or boolean column with at most ``max(50, items / 2)`` distinct values
  is a categorical feature; it is read as text too, so the encoder sees it ("Mug. Kitchen.").
* Float columns (prices, scores) are skipped: CTR features are categorical.

User columns with at most ``max(50, users / 2)`` distinct values are user features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mimrec.data.files import find_table, read_table
from mimrec.errors import DataError

TEXT_WORDS = 4  # mean words above which a string column is text, not a category


@dataclass(frozen=True)
class TableSummary:
    """What :func:`inspect_tables` found, with one reason per choice.

    Args:
        folder: the data folder.
        events: interaction rows; ``users`` and ``items``: distinct users and catalogue items.
        has_label: the interactions carry 0/1 labels (else ratings).
        rating_median: the median rating when there are ratings (None otherwise).
        text_fields: item columns joined into the item text.
        item_features: item columns used as categorical CTR features.
        user_features: user columns used as categorical CTR features.
        image: the items have an ``image`` column.
        attributes: the items have attribute tokens shared by two or more items.
        reasons: column -> why it was (or was not) chosen.
    """

    folder: Path
    events: int
    users: int
    items: int
    has_label: bool
    rating_median: float | None
    text_fields: tuple[str, ...]
    item_features: tuple[str, ...]
    user_features: tuple[str, ...]
    image: bool
    attributes: bool
    reasons: dict[str, str] = field(default_factory=dict)


def _is_list_column(values: pd.Series) -> bool:
    present = values.dropna()
    return len(present) > 0 and all(isinstance(v, (list, tuple, np.ndarray)) for v in present)


def _distinct(values: pd.Series) -> int:
    return values.dropna().astype(str).nunique()


def classify_item_column(name: str, values: pd.Series, n_items: int) -> tuple[str, str]:
    """(kind, reason) of one items column; kind is text, category, list, skip."""
    if _is_list_column(values):
        return "list", "holds lists: a multi-valued categorical feature, and text"
    distinct = _distinct(values)
    if distinct == 0:
        return "skip", "empty"
    if pd.api.types.is_float_dtype(values):
        return "skip", "numbers with decimals: not a categorical feature, not text"
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        words = values.dropna().astype(str).str.split().str.len().mean()
        if distinct > n_items / 2 or words > TEXT_WORDS:
            return "text", (f"{distinct} distinct values over {n_items} items, "
                            f"{words:.1f} words on average: text")
    if distinct <= max(50, n_items / 2):
        return "category", f"{distinct} distinct values: a categorical feature, also read as text"
    return "skip", f"{distinct} distinct values: too many for a category, not text"


def _attributes_useful(values: pd.Series) -> bool:
    counts: dict[str, int] = {}
    for v in values.dropna():
        tokens = v.split() if isinstance(v, str) else [str(t) for t in v]
        for t in set(tokens):
            counts[t] = counts.get(t, 0) + 1
    return any(c >= 2 for c in counts.values())


def inspect_tables(folder: str | Path) -> TableSummary:
    """Read the tables of ``folder`` and choose columns (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    inter = read_table(find_table(folder, "interactions"))
    items = read_table(find_table(folder, "items"))
    users_path = find_table(folder, "users", required=False)
    for name, df, col in (("interactions", inter, "item_id"), ("items", items, "item_id")):
        if col not in df.columns:
            raise DataError(f"{folder / name}: missing column {col!r} (columns present: "
                            f"{', '.join(map(str, df.columns))})")
    reasons: dict[str, str] = {}
    text, features = [], []
    for column in items.columns:
        if column in ("item_id", "image", "attributes"):
            continue
        kind, why = classify_item_column(column, items[column], len(items))
        reasons[f"items.{column}"] = why
        if kind == "text":
            text.append(column)
        elif kind in ("category", "list"):
            features.append(column)
            text.append(column)
    attributes = "attributes" in items.columns and _attributes_useful(items["attributes"])
    if "attributes" in items.columns:
        reasons["items.attributes"] = ("tokens shared by items: the attribute tower is on"
                                       if attributes else "no token shared by two items: off")
    user_features = []
    if users_path is not None:
        users = read_table(users_path)
        for column in users.columns:
            if column == "user_id":
                continue
            distinct = _distinct(users[column])
            ok = 0 < distinct <= max(50, len(users) / 2) and not pd.api.types.is_float_dtype(
                users[column])
            reasons[f"users.{column}"] = (f"{distinct} distinct values: "
                                          + ("a user feature" if ok else "skipped"))
            if ok:
                user_features.append(column)
    rating = (float(pd.to_numeric(inter["rating"], errors="coerce").median())
              if "rating" in inter.columns else None)
    return TableSummary(folder, len(inter), inter["user_id"].nunique() if "user_id" in inter
                        else 0, len(items), "label" in inter.columns, rating, tuple(text),
                        tuple(features), tuple(user_features), "image" in items.columns,
                        attributes, reasons)
