"""The report reads one split's scored columns from the sample shards, equal to the samples'."""

import numpy as np

from mimrec.data.config import DataConfig
from mimrec.data.sample_shards import write_samples
from mimrec.data.samples import TEST, VALID
from mimrec.data.stage import run_data
from mimrec.eval.split_rows import COLUMNS, read_buckets, read_split_rows


def test_split_rows_equal_the_samples_subset(ml_slice, tmp_path):
    data = run_data(DataConfig(dataset="files", path=str(ml_slice)), tmp_path / "data")
    write_samples(data.samples, tmp_path / "sharded" / "samples", shard_rows=1000)
    assert len(list((tmp_path / "sharded" / "samples").glob("events-*.parquet"))) > 2
    for split in (VALID, TEST):
        expected = data.samples.subset(split)
        rows = read_split_rows(tmp_path / "sharded", split)
        for key in COLUMNS:
            assert rows[key].dtype == expected[key].dtype
            np.testing.assert_array_equal(rows[key], expected[key])
    buckets = read_buckets(tmp_path / "data")
    assert buckets.names == data.samples.buckets
    assert buckets.lows == tuple(int(x) for x in data.samples.bucket_lows)
