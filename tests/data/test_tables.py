import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimrec.data.files import load_files
from mimrec.errors import DataError
from mimrec.validation import id_problem, text_problem
from tests.conftest import write_slice


def _write(folder, frames, fmt="csv"):
    folder.mkdir(exist_ok=True)
    for name, df in frames.items():
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def test_generic_loader_reads_csv_and_parquet(ml100k, tmp_path):
    for fmt in ("csv", "parquet"):
        folder = write_slice(ml100k, tmp_path / fmt, n_users=30, fmt=fmt)
        ds = load_files(folder, 4.0, ("title",))
        assert len(ds.users) == 30
        assert set(ds.interactions["user_id"]) == set(ds.users["user_id"])
        assert ds.interactions["label"].isin([0, 1]).all()


def test_small_dataset_labels_from_ratings(small_frames, tmp_path):
    ds = load_files(_write(tmp_path / "d", small_frames), 4.0, ("title",))
    assert ds.interactions["label"].tolist() == [1, 0, 1, 1]
    assert ds.interactions["user_id"].tolist() == ["1", "1", "2", "2"]


def test_dates_are_parsed(small_frames, tmp_path):
    small_frames["interactions"]["timestamp"] = ["2020-01-01", "2020-01-02T10:00:00",
                                                 "2020-01-03", "2020-01-04"]
    ds = load_files(_write(tmp_path / "d", small_frames), 4.0, ("title",))
    assert ds.interactions["timestamp"].iloc[0] == 1577836800


@pytest.mark.parametrize(
    "table, change, message",
    [
        ("interactions", lambda d: d.drop(columns=["item_id"]), "missing column 'item_id'"),
        ("interactions", lambda d: d.drop(columns=["rating"]), "'label' (0/1) or a 'rating'"),
        ("interactions", lambda d: d.assign(timestamp=["x", "2020-01-01", "1", "2"]),
         "'timestamp' does not parse"),
        ("interactions", lambda d: d.assign(user_id=[1, None, 2, 2]), "null id"),
        ("interactions", lambda d: d.assign(item_id=["a", "b", "a", "zz"]),
         "not in the items table"),
        ("interactions", lambda d: d.iloc[:0], "the table is empty"),
        ("interactions", lambda d: d.assign(rating=["5", "x", "4", "4"]),
         "'rating' is not a finite number"),
        ("interactions", lambda d: d.assign(rating=["5", "Infinity", "4", "4"]),
         "'rating' is not a finite number"),
        ("items", lambda d: d.assign(title=["1", "Infinity", "3"]),  # read as numbers
         "a number must be finite, got inf"),
        ("items", lambda d: d.assign(item_id=["a", "   ", "c"]), "must not be empty or blank"),
        ("items", lambda d: d.assign(item_id=["a", "a", "c"]), "duplicate item_id 'a'"),
        ("items", lambda d: d.drop(columns=["title"]), "missing column 'title'"),
    ],
)
def test_bad_tables_name_file_column_and_row(small_frames, tmp_path, table, change, message):
    small_frames[table] = change(small_frames[table])
    folder = _write(tmp_path / "d", small_frames)
    with pytest.raises(DataError) as err:
        load_files(folder, 4.0, ("title",))
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    if "empty" not in message and "missing column" not in message and "label" not in message:
        assert "row" in text


def test_missing_table_and_folder(small_frames, tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        load_files(tmp_path / "nope", 4.0, ())
    folder = _write(tmp_path / "d", {"items": small_frames["items"]})
    with pytest.raises(DataError, match="missing table 'interactions'"):
        load_files(folder, 4.0, ())


def test_malformed_parquet_is_a_clear_error(small_frames, tmp_path):
    folder = _write(tmp_path / "d", small_frames)
    (folder / "interactions.csv").unlink()
    (folder / "interactions.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="interactions.parquet: cannot read"):
        load_files(folder, 4.0, ())


def test_movielens_items_carry_content(ml100k):
    items = ml100k.items
    assert len(items) == 1682 and items["item_id"].is_unique
    toy = items[items["item_id"] == "1"].iloc[0]
    assert toy["title"] == "Toy Story" and toy["year"] == "1995"
    assert "Animation" in list(toy["genres"])
    assert {"genre:Animation", "year:1995", "decade:1990s"} <= set(toy["attributes"])
    assert (items["attributes"].map(len) > 0).all()
    assert isinstance(ml100k.users, pd.DataFrame) and len(ml100k.users) == 943


def test_movielens_kg_tokens_on_request(ml100k):
    from mimrec.data.movielens import load_movielens

    kg = load_movielens(4.0, ("title",), kg=True)
    toy = kg.items[kg.items["item_id"] == "1"].iloc[0]
    assert any(t.startswith("actor:") for t in toy["attributes"])


@pytest.mark.parametrize(
    "table, column, value, message",
    [
        ("items", "item_id", "b\x00x", "control characters"),
        ("items", "item_id", "b\nx", "control characters"),
        ("items", "item_id", "b" * 300, "at most 256 characters"),
        ("interactions", "user_id", "1\u20282", "control characters"),
        ("items", "title", "B\x00", "control character"),
        ("items", "title", "B" * 20_000, "at most 10,000 characters"),
        ("items", "attributes", "ok b\x01d", "a token must not contain control characters"),
    ],
)
def test_ids_and_content_that_break_the_validation_rules_are_refused(
        small_frames, tmp_path, table, column, value, message):
    frame = small_frames[table].copy()
    frame[column] = frame[column].astype(str) if column in frame else "x"
    frame.loc[1, column] = value
    small_frames[table] = frame
    folder = _write(tmp_path / "d", small_frames, fmt="parquet")
    with pytest.raises(DataError) as err:
        load_files(folder, 4.0, ("title",))
    text = str(err.value)
    assert message in text and f"'{column}'" in text and "row 2" in text
    assert "\n" not in text.replace("\\n", "")


IDS = st.one_of(st.sampled_from(["a", "b", "c", " d ", "7", "x" * 256]), st.text(max_size=6),
                st.sampled_from(["", "e\x00", "f\ng", "x" * 257]))
TEXTS = st.one_of(st.text(max_size=8), st.sampled_from(["Toy Story", "t\x00", "ok\nline"]))
NUMBERS = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_table_loads_into_valid_data_or_is_one_line_error(data):
    """Whatever the tables hold, the loader returns data in which every id and text passes the
    validation rules, item ids are unique and every interaction names a known item, with the
    events kept one for one; or it refuses with one line naming the data."""
    n = data.draw(st.integers(1, 5))
    ids = data.draw(st.lists(IDS, min_size=n, max_size=n))
    titles = data.draw(st.one_of(st.lists(TEXTS, min_size=n, max_size=n),
                                 st.lists(NUMBERS, min_size=n, max_size=n)))
    events = data.draw(st.lists(st.tuples(IDS, IDS, st.one_of(st.integers(0, 10**9), NUMBERS),
                                          NUMBERS),
                                min_size=1, max_size=8))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pd.DataFrame({"item_id": ids, "title": titles}).to_parquet(folder / "items.parquet")
        pd.DataFrame(events, columns=["user_id", "item_id", "timestamp", "rating"]).to_parquet(
            folder / "interactions.parquet")
        try:
            ds = load_files(folder, 4.0, ("title",))
        except DataError as err:
            assert "\n" not in str(err).replace("\\n", "") and folder.name in str(err)
            return
    assert len(ds.interactions) == len(events)
    assert ds.items["item_id"].is_unique
    for column in (ds.items["item_id"], ds.interactions["item_id"], ds.interactions["user_id"]):
        assert all(id_problem(v) is None for v in column)
    assert ds.interactions["item_id"].isin(ds.items["item_id"]).all()
    assert ds.interactions["label"].isin([0, 1]).all()
    assert all(text_problem(t) is None for t in ds.items["title"] if not pd.isna(t))


@pytest.mark.parametrize("value, message", [
    ("a\x07b", "control character '\\x07'"),
    ("a\x85b", "control character '\\x85'"),
    ("x" * 10_001, "at most 10,000 characters"),
    ("lone \ud800 surrogate", "control character"),
    (float("inf"), "must be finite"),
])
def test_text_columns_are_checked_whole_and_the_first_bad_row_is_named(value, message):
    """A column of plain strings is checked in one pass (Arrow); any problem, or a value that is
    not a string, sends it through the per-value check that names the row."""
    from mimrec.data.tables import _plain_texts_pass, check_text_columns

    titles = pd.Series([f"title {i}\twith tab\nand line" for i in range(5000)] + [None],
                       dtype=object)
    assert _plain_texts_pass(titles)
    assert _plain_texts_pass(titles.astype("string"))  # pandas' own strings (Arrow-backed)
    check_text_columns(pd.DataFrame({"title": titles}), ("title",), "items.csv")
    titles[3210] = value
    assert not _plain_texts_pass(titles)
    if isinstance(value, str) and "\ud800" not in value:
        assert not _plain_texts_pass(titles.astype("string"))
    with pytest.raises(DataError, match=f"items.csv: column 'title': .*{re.escape(message)}.* "
                                        "at row 3211"):
        check_text_columns(pd.DataFrame({"title": titles}), ("title",), "items.csv")
    genres = pd.Series([np.array(["Drama", f"g{i}"], dtype=object) for i in range(5000)]
                       + [[], None], dtype=object)  # lists of strings, as parquet gives them
    assert _plain_texts_pass(genres)
    genres[4321] = np.array(["Drama", value], dtype=object)
    assert not _plain_texts_pass(genres)
    with pytest.raises(DataError, match=f"items.csv: column 'genres': .*{re.escape(message)}.* "
                                        "at row 4322"):
        check_text_columns(pd.DataFrame({"genres": genres}), ("genres",), "items.csv")


def test_a_missing_string_inside_a_list_is_named_as_before():
    from mimrec.data.tables import _plain_texts_pass, check_text_columns

    genres = pd.Series([["Drama"], ["Comedy", None]], dtype=object)
    assert not _plain_texts_pass(genres)
    with pytest.raises(DataError, match="column 'genres': .* at row 2"):
        check_text_columns(pd.DataFrame({"genres": genres}), ("genres",), "items.csv")
