"""The generic loader: a folder with ``interactions``, ``items`` and optional ``users`` tables,
each as ``.parquet`` or ``.csv``, in the schema documented in :mod:`mimrec.data.tables`. Image
paths in the items' ``image`` column are relative to this folder (absolute ones are kept).

``interactions`` may also be a folder of parquet files (a parquet dataset, any number of
shards): it is then scanned batch by batch into encoded events (:mod:`mimrec.data.scan`), so a
log larger than memory as a table can be read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.progress import Progress

from mimrec.data.content import resolve_image_paths
from mimrec.data.scan import scan_interactions
from mimrec.data.tables import (
    Dataset,
    check_references,
    validate_interactions,
    validate_items,
    validate_users,
)
from mimrec.errors import DataError

_SUFFIXES = (".parquet", ".csv")


def find_table(folder: Path, name: str, required: bool = True) -> Path | None:
    """``folder/name.parquet`` or ``folder/name.csv``; a clear error if neither (when required)."""
    for suffix in _SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    if required:
        raise DataError(f"missing table {name!r}: expected {folder / name}.parquet or .csv")
    return None


def read_table(path: Path) -> pd.DataFrame:
    """Read one parquet or CSV table; a malformed file is a DataError naming it."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    except (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError,
            UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot read the table: {str(exc).splitlines()[0]}") from None


def load_files(folder: str | Path, positive_rating: float, text_fields: tuple[str, ...]) -> Dataset:
    """Load and validate the tables in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    if (folder / "interactions").is_dir():
        return load_sharded(folder, positive_rating, text_fields)
    inter_path = find_table(folder, "interactions")
    items_path = find_table(folder, "items")
    users_path = find_table(folder, "users", required=False)
    interactions = validate_interactions(read_table(inter_path), str(inter_path), positive_rating)
    items = resolve_image_paths(
        validate_items(read_table(items_path), str(items_path), text_fields), folder)
    users = validate_users(read_table(users_path), str(users_path)) if users_path else None
    sources = tuple(p for p in (inter_path, items_path, users_path) if p is not None)
    ds = Dataset(folder.name, interactions, items, users, sources)
    check_references(ds)
    return ds


def load_sharded(folder: Path, positive_rating: float, text_fields: tuple[str, ...]) -> Dataset:
    """Load a folder whose ``interactions`` is a parquet dataset folder (see the module
    docstring); items and users are read as tables."""
    items_path = find_table(folder, "items")
    users_path = find_table(folder, "users", required=False)
    items = validate_items(read_table(items_path), str(items_path), text_fields)
    users = validate_users(read_table(users_path), str(users_path)) if users_path else None
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        events = scan_interactions(folder / "interactions", items, users, positive_rating,
                                   progress)
    shards = tuple(sorted((folder / "interactions").rglob("*.parquet")))
    sources = (*shards, items_path, *((users_path,) if users_path else ()))
    return Dataset(folder.name, None, items, users, sources, events)
