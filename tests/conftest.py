"""Shared fixtures. MovieLens rows are never committed: slices are cut from the installed
recbole package at test time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mimrec.data.movielens import load_movielens
from mimrec.data.tables import Dataset


@pytest.fixture(scope="session")
def ml100k() -> Dataset:
    """The full MovieLens-100K dataset in standard form."""
    return load_movielens(4.0, ("title", "year", "genres"))


def write_slice(ds: Dataset, folder: Path, n_users: int = 120, fmt: str = "parquet") -> Path:
    """Write the first ``n_users`` users' interactions and the whole catalogue as files tables."""
    folder.mkdir(parents=True, exist_ok=True)
    users = ds.users.iloc[:n_users]
    inter = ds.interactions[ds.interactions["user_id"].isin(users["user_id"])]
    tables = {"interactions": inter, "items": ds.items, "users": users}
    for name, df in tables.items():
        if fmt == "parquet":
            df.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            df.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture
def ml_slice(ml100k: Dataset, tmp_path: Path) -> Path:
    """A small real slice of MovieLens as a ``files`` dataset folder."""
    return write_slice(ml100k, tmp_path / "ml-slice")


@pytest.fixture
def small_frames() -> dict[str, pd.DataFrame]:
    """A hand-made tiny dataset in the documented schema."""
    inter = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": ["a", "b", "a", "c"],
                          "timestamp": [10, 20, 15, 30], "rating": [5, 2, 4, 4]})
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"],
                          "year": ["1990", "1991", "1992"], "genres": ["x|y", "y", "z"]})
    return {"interactions": inter, "items": items}
