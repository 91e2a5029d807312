"""The standard tables every loader produces, and their validation.

* interactions: ``user_id``, ``item_id``, ``timestamp`` (int seconds, or a parseable date-time), and
  ``label`` (0/1) and/or ``rating`` (number); optional ``click_probability`` (in [0, 1]: the true
  click probability, known only in a simulation such as P4; the report gives its AUC as the
  oracle).
* items: ``item_id`` plus content: text columns, optional ``image`` (encoded PNG/JPEG bytes or a file
  path), optional ``attributes`` (a list of tokens, or one string of space-separated tokens), and
  any categorical columns (a list value is a multi-valued feature).
* users (optional): ``user_id`` plus side features.

Ids are normalised to strings, so ``42`` and ``"42"`` name the same item everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mimrec.data.events import Events
from mimrec.errors import DataError
from mimrec.validation import (
    MAX_TEXT_CHARS,
    TEXT_BAD_RE2,
    id_problem,
    invalid_ids,
    text_problem,
    tokens_problem,
)


@dataclass
class Dataset:
    """One dataset in standard form.

    Args:
        name: a short name for reports.
        interactions: one row per impression (see module docstring).
        items: one row per catalogue item, unique ``item_id``.
        users: one row per user, unique ``user_id``; None when the data has no user table.
        sources: the files read, for the artifact manifest.
        events: the interactions already encoded (a parquet dataset folder is scanned straight
            into them, :mod:`mimrec.data.scan`); ``interactions`` is then None.
    """

    name: str
    interactions: pd.DataFrame | None
    items: pd.DataFrame
    users: pd.DataFrame | None
    sources: tuple[Path, ...] = ()
    events: Events | None = None

    @property
    def num_events(self) -> int:
        return len(self.events) if self.events is not None else len(self.interactions)


def _example(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    idx = np.flatnonzero(np.asarray(mask))[0]
    row = df.iloc[idx].to_dict()
    return f"row {idx + 1}: {row}"


def require_columns(df: pd.DataFrame, columns: tuple[str, ...] | list[str], source: str) -> None:
    """Raise a DataError naming the file and the first missing column."""
    for col in columns:
        if col not in df.columns:
            have = ", ".join(map(str, df.columns))
            raise DataError(f"{source}: missing column {col!r} (columns present: {have})")


def _check_not_empty(df: pd.DataFrame, source: str) -> None:
    if len(df) == 0:
        raise DataError(f"{source}: the table is empty")


def normalise_ids(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Ids as strings (surrounding whitespace dropped); nulls and ids that break
    :mod:`mimrec.validation` (blank, too long, control characters) are errors naming the row."""
    ids = df[column]
    null = ids.isna().to_numpy()
    if null.any():
        raise DataError(f"{source}: column {column!r} has a null id at {_example(df, null)}")
    if pd.api.types.is_float_dtype(ids):
        if not np.isfinite(ids.to_numpy()).all():
            bad = ~np.isfinite(ids.to_numpy())
            raise DataError(f"{source}: column {column!r} has a non-finite id at "
                            f"{_example(df, bad)}")
        if (ids % 1 == 0).all():
            ids = ids.astype(np.int64)
    out = ids.astype(str).str.strip()
    bad = invalid_ids(out)
    if bad.any():
        problem = id_problem(out[bad].iloc[0])
        raise DataError(f"{source}: column {column!r}: {problem} at {_example(df, bad)}")
    return out


def check_text_columns(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    """Every non-null value of the text columns passes :func:`mimrec.validation.text_problem`
    (finite numbers, bounded strings without control characters, lists of such strings)."""
    for column in columns:
        if _plain_texts_pass(df[column]):
            continue
        for row, value in enumerate(df[column].tolist()):
            problem = _cell_problem(value)
            if problem:
                raise DataError(f"{source}: column {column!r}: {problem} at row {row + 1}")


def _plain_texts_pass(values: pd.Series) -> bool:
    """True when every value is a string or a list of strings (or missing) that
    :func:`_cell_problem` passes, checked on the whole column at once with Arrow's compute
    functions (a million items' titles, years and genres: seconds one value at a time). False
    sends the column through the per-value check, which names the first problem: any other
    type, a text too long or with a control character, a missing string inside a list, a
    string Arrow cannot hold (a lone surrogate)."""
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty", "mixed"):
        return False
    try:
        texts = pa.array(values, from_pandas=True)
    except (pa.ArrowException, UnicodeError, TypeError, ValueError):
        return False
    if pa.types.is_list(texts.type) or pa.types.is_large_list(texts.type):  # lists (genres)
        texts = texts.flatten()
        if texts.null_count:
            return False
    if pa.types.is_null(texts.type):
        return True
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        return False  # pandas' own string columns come as large_string
    too_long = pc.any(pc.greater(pc.utf8_length(texts), MAX_TEXT_CHARS)).as_py()
    return not too_long and not pc.any(pc.match_substring_regex(texts, TEXT_BAD_RE2)).as_py()


def _cell_problem(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None  # a missing text is an empty one
    if isinstance(value, (np.ndarray, list, tuple)):
        parts = [v.item() if isinstance(v, np.generic) else v for v in list(value)]
        return next((p for p in map(text_problem, parts) if p), None)
    return text_problem(value.item() if isinstance(value, np.generic) else value)


def parse_timestamps(df: pd.DataFrame, source: str) -> np.ndarray:
    """Timestamps as int64 seconds: numbers are taken as Unix seconds, strings are parsed as dates."""
    ts = df["timestamp"]
    if pd.api.types.is_numeric_dtype(ts):
        seconds = ts.to_numpy(dtype=float, na_value=np.nan)
        bad = ~(np.abs(seconds) < 2.0**62)  # NaN, infinity, or beyond int64 seconds
        if bad.any():
            raise DataError(f"{source}: column 'timestamp' has a missing value at {_example(df, bad)}")
        return ts.to_numpy().astype(np.int64)
    parsed = pd.to_datetime(ts, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise DataError(
            f"{source}: column 'timestamp' does not parse as a date-time or Unix seconds at "
            f"{_example(df, bad)}"
        )
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.int64)


def validate_interactions(df: pd.DataFrame, source: str, positive_rating: float) -> pd.DataFrame:
    """Check and normalise an interactions table; returns user_id, item_id, timestamp, label
    [, rating][, click_probability]."""
    _check_not_empty(df, source)
    require_columns(df, ["user_id", "item_id", "timestamp"], source)
    if "label" not in df.columns and "rating" not in df.columns:
        raise DataError(f"{source}: needs a 'label' (0/1) or a 'rating' column; found neither")
    out = pd.DataFrame(
        {
            "user_id": normalise_ids(df, "user_id", source),
            "item_id": normalise_ids(df, "item_id", source),
            "timestamp": parse_timestamps(df, source),
        }
    )
    if "rating" in df.columns:
        rating = pd.to_numeric(df["rating"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(over="ignore"):
            rating32 = rating.astype(np.float32)  # stored as float32: 1e300 would become inf
        bad = ~np.isfinite(rating32)
        if bad.any():
            raise DataError(f"{source}: column 'rating' is not a finite number at "
                            f"{_example(df, bad)}")
        out["rating"] = rating32
    if "label" in df.columns:
        label = pd.to_numeric(df["label"], errors="coerce")
        bad = ~label.isin([0, 1]).to_numpy()
        if bad.any():
            raise DataError(f"{source}: column 'label' must be 0 or 1, at {_example(df, bad)}")
        out["label"] = label.to_numpy().astype(np.int8)
    else:
        out["label"] = (out["rating"] >= positive_rating).astype(np.int8)
    if "click_probability" in df.columns:
        prob = pd.to_numeric(df["click_probability"], errors="coerce")
        bad = ~prob.between(0, 1).to_numpy()
        if bad.any():
            raise DataError(f"{source}: column 'click_probability' must be a number in [0, 1], "
                            f"at {_example(df, bad)}")
        out["click_probability"] = prob.to_numpy(dtype=np.float32)
    return out


def validate_items(df: pd.DataFrame, source: str, text_fields: tuple[str, ...]) -> pd.DataFrame:
    """Check an items table: unique non-null ids, the configured text columns present."""
    _check_not_empty(df, source)
    require_columns(df, ["item_id", *text_fields], source)
    out = df.copy()
    out["item_id"] = normalise_ids(df, "item_id", source)
    dup = out["item_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(f"{source}: duplicate item_id {out['item_id'][dup].iloc[0]!r} at "
                        f"{_example(df, dup)}")
    check_text_columns(out, text_fields, source)
    if "attributes" in out.columns:
        out["attributes"] = [_tokens(v) for v in out["attributes"]]
        for row, tokens in enumerate(out["attributes"]):
            problem = tokens_problem(tokens)
            if problem:
                raise DataError(f"{source}: column 'attributes': {problem} at row {row + 1}")
    return out.reset_index(drop=True)


def _tokens(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


def validate_users(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a users table: unique non-null ids."""
    _check_not_empty(df, source)
    require_columns(df, ["user_id"], source)
    out = df.copy()
    out["user_id"] = normalise_ids(df, "user_id", source)
    dup = out["user_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(f"{source}: duplicate user_id at {_example(df, dup)}")
    return out.reset_index(drop=True)


def check_references(ds: Dataset) -> None:
    """Every interaction's item must be in the catalogue (and its user in the users table, if any)."""
    known = pd.Index(ds.items["item_id"])
    missing = ~ds.interactions["item_id"].isin(known).to_numpy()
    if missing.any():
        raise DataError(
            f"{ds.name}: interactions name an item_id that is not in the items table, at "
            f"{_example(ds.interactions, missing)}"
        )
    if ds.users is not None:
        missing = ~ds.interactions["user_id"].isin(pd.Index(ds.users["user_id"])).to_numpy()
        if missing.any():
            raise DataError(
                f"{ds.name}: interactions name a user_id that is not in the users table, at "
                f"{_example(ds.interactions, missing)}"
            )
