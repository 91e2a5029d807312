"""The synthetic scale generator: shape, determinism, and that the data stage reads its output."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mimrec.data.config import DataConfig
from mimrec.data.files import load_files
from mimrec.data.samples import build_samples


def generate(out: Path, events: int = 60_000, seed: int = 3) -> Path:
    r = subprocess.run([sys.executable, "benchmarks/make_scale_data.py", "--events", str(events),
                        "--users", "400", "--items", "900", "--seed", str(seed), "--out", str(out),
                        "--shard-events", "25000"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "synthetic data: 60,000 events" in r.stdout
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("scale") / "syn")


def test_tables_have_the_generic_schema_and_say_synthetic(synthetic):
    shards = sorted((synthetic / "interactions").glob("*.parquet"))
    assert len(shards) == 3  # 25,000 events a shard
    for path in (*shards, synthetic / "items.parquet", synthetic / "users.parquet"):
        assert b"synthetic" in pq.read_schema(path).metadata[b"mimrec"]
    inter = pd.read_parquet(synthetic / "interactions")
    assert list(inter.columns) == ["user_id", "item_id", "timestamp", "label"]
    assert len(inter) == 60_000 and inter["timestamp"].is_monotonic_increasing
    items = pd.read_parquet(synthetic / "items.parquet")
    assert len(items) == 900 and items["title"].str.len().min() > 0
    assert all(len(set(g)) == len(g) >= 1 for g in items["genres"])
    assert 0.2 < inter["label"].mean() < 0.7


def test_popularity_and_activity_are_skewed(synthetic):
    inter = pd.read_parquet(synthetic / "interactions")
    item_counts = np.sort(inter["item_id"].value_counts().to_numpy())[::-1]
    assert item_counts[:9].sum() / len(inter) > 0.25  # Zipf: the top 1% of items hold > 25%
    user_counts = np.sort(inter["user_id"].value_counts().to_numpy())[::-1]
    assert user_counts[:40].sum() / len(inter) > 0.25  # the most active 10% of users
    assert user_counts[0] > 5 * np.median(user_counts)


def test_the_same_seed_writes_the_same_tables(synthetic, tmp_path):
    again = generate(tmp_path / "again")
    other = generate(tmp_path / "other", seed=4)
    for name in ("interactions", "items.parquet", "users.parquet"):
        assert pd.read_parquet(again / name).equals(pd.read_parquet(synthetic / name))
    assert not pd.read_parquet(other / "interactions").equals(
        pd.read_parquet(synthetic / "interactions"))


def test_the_data_stage_reads_the_generated_folder(synthetic):
    ds = load_files(synthetic, 4.0, ("title", "year", "genres"))
    samples = build_samples(ds, DataConfig())
    assert len(samples.split) == 60_000 and len(samples.user_ids) == 400
    assert samples.hist_len.max() == 50
