"""The out-of-core path: interactions as a folder of parquet shards, samples written as shards."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mimrec.data.config import DataConfig
from mimrec.data.files import load_files
from mimrec.data.sample_shards import read_samples, shard_files, write_samples
from mimrec.data.samples import build_samples
from mimrec.errors import DataError

FIELDS = ("split", "user", "item", "timestamp", "label", "seq_items", "hist_end", "hist_len",
          "bucket", "item_train_count", "new_item", "user_ids", "click_probability")


def assert_same_samples(a, b) -> None:
    assert a.max_seq_len == b.max_seq_len
    for k in FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype, k
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k


def write_sharded(ml100k, folder: Path, ints: bool, shards: int = 5, users: bool = True) -> Path:
    """ML-100K as a sharded folder: integer columns (the fast path) or strings with ratings."""
    (folder / "interactions").mkdir(parents=True)
    inter = ml100k.interactions.sample(frac=1.0, random_state=0)  # file order does not matter
    if ints:
        inter = pd.DataFrame({"user_id": inter["user_id"].astype(np.int64),
                              "item_id": inter["item_id"].astype(np.int64),
                              "timestamp": inter["timestamp"], "label": inter["label"]})
    else:
        inter = inter[["user_id", "item_id", "timestamp", "rating"]]
    for k, rows in enumerate(np.array_split(np.arange(len(inter)), shards)):
        inter.iloc[rows].to_parquet(folder / "interactions" / f"part-{k}.parquet", index=False)
    ml100k.items.to_parquet(folder / "items.parquet", index=False)
    if users:
        ml100k.users.to_parquet(folder / "users.parquet", index=False)
    return folder


@pytest.mark.parametrize("ints", [True, False], ids=["integer columns", "strings and ratings"])
@pytest.mark.parametrize("cfg", [DataConfig(), DataConfig(new_item_fraction=0.2)],
                         ids=["P1", "P1-cold"])
def test_a_sharded_folder_gives_the_samples_of_the_in_memory_tables(ml100k, tmp_path, ints, cfg):
    ds = load_files(write_sharded(ml100k, tmp_path / "d", ints), 4.0, ("title",))
    assert ds.interactions is None and ds.num_events == 100_000
    assert len(ds.sources) == 5 + 2
    assert_same_samples(build_samples(ds, cfg), build_samples(ml100k, cfg))


def test_without_a_users_table_users_are_the_sorted_distinct_ids(ml100k, tmp_path):
    ds = load_files(write_sharded(ml100k, tmp_path / "d", True, users=False), 4.0, ())
    reference = type(ml100k)("x", ml100k.interactions, ml100k.items, None)
    assert_same_samples(build_samples(ds, DataConfig()), build_samples(reference, DataConfig()))


def test_an_unknown_item_names_the_shard_and_row(ml100k, tmp_path):
    folder = write_sharded(ml100k, tmp_path / "d", True, shards=2)
    bad = pd.read_parquet(folder / "interactions" / "part-1.parquet")
    bad.loc[7, "item_id"] = 99999
    bad.to_parquet(folder / "interactions" / "part-1.parquet", index=False)
    with pytest.raises(DataError, match=r"part-1\.parquet: row 8: .*99999"):
        load_files(folder, 4.0, ())


def test_a_bad_label_and_a_missing_column_are_data_errors(tmp_path):
    folder = tmp_path / "d"
    (folder / "interactions").mkdir(parents=True)
    pd.DataFrame({"item_id": ["a"], "title": ["A"]}).to_parquet(folder / "items.parquet")
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [1, 1], "timestamp": [1, 2],
                             "label": [0, 3]}), folder / "interactions" / "p.parquet")
    with pytest.raises(DataError, match=r"'label' must be 0 or 1, at .*p\.parquet: row 2"):
        load_files(folder, 4.0, ())
    pq.write_table(pa.table({"user_id": [1], "item_id": [1], "label": [0]}),
                   folder / "interactions" / "p.parquet")
    with pytest.raises(DataError, match="missing column 'timestamp'"):
        load_files(folder, 4.0, ())


def test_samples_round_trip_through_shards(ml100k, tmp_path):
    samples = build_samples(ml100k, DataConfig(new_item_fraction=0.2))
    write_samples(samples, tmp_path / "s", shard_rows=30_000)
    files = shard_files(tmp_path / "s")
    assert len(files) == -(-len(samples.split) // 30_000) >= 3
    assert_same_samples(read_samples(tmp_path / "s"), samples)
    second = read_samples(tmp_path / "s", files[1:2])  # one shard: rows 30,000 to 59,999
    rows = np.arange(30_000, 60_000)
    assert np.array_equal(second.item, samples.item[rows])
    assert np.array_equal(second.history_rows(np.arange(30_000)), samples.history_rows(rows))
