"""The index stage's sharded encoding: a killed run resumes from its finished shards, a torn or
stale shard is never reused, and two torchrun workers share the shards and give the same vectors
as one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from mimrec.store.encode_shards import encode_in_shards, shard_folder


def items(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "x": np.arange(n, dtype=float)})


class CountingEncoder:
    """(rows, 3) vectors computed from column x; counts the rows it encoded."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, part: pd.DataFrame) -> np.ndarray:
        self.rows += len(part)
        x = part["x"].to_numpy()
        return np.stack([x, x ** 2, -x], axis=1).astype(np.float32)


def expected(table: pd.DataFrame) -> np.ndarray:
    return CountingEncoder()(table)


def test_a_killed_run_resumes_from_its_finished_shards(tmp_path):
    table = items(50)
    folder = shard_folder(tmp_path, "raw", "model-a", table["item_id"].to_numpy(), 16)

    def killed_after_two(k: int) -> None:
        if k == 1:
            raise KeyboardInterrupt  # the run dies after writing shards 0 and 1

    first = CountingEncoder()
    with pytest.raises(KeyboardInterrupt):
        encode_in_shards(first, table, folder, "raw", shard_items=16, on_shard=killed_after_two)
    assert first.rows == 32 and sorted(p.name for p in folder.iterdir()) == [
        "shard-000000.npy", "shard-000001.npy"]  # no temporary file left behind
    second = CountingEncoder()
    vectors, run = encode_in_shards(second, table, folder, "raw", shard_items=16)
    assert second.rows == 50 - 32  # only shards 2 and 3 were encoded
    assert (run.shards, run.reused, run.encoded) == (4, 2, 18)
    np.testing.assert_array_equal(vectors, expected(table))
    again = CountingEncoder()
    vectors, run = encode_in_shards(again, table, folder, "raw", shard_items=16)
    assert again.rows == 0 and run.reused == 4 and "0 items encoded" in run.line("raw")
    np.testing.assert_array_equal(vectors, expected(table))


def test_a_torn_shard_is_encoded_again(tmp_path):
    table = items(40)
    folder = shard_folder(tmp_path, "raw", "model-a", table["item_id"].to_numpy(), 16)
    encode_in_shards(CountingEncoder(), table, folder, "raw", shard_items=16)
    (folder / "shard-000001.npy").write_bytes(b"\x93NUMPY torn")
    np.save(folder / "shard-000002.npy", np.zeros((3, 3), np.float32))  # wrong row count
    redo = CountingEncoder()
    vectors, run = encode_in_shards(redo, table, folder, "raw", shard_items=16)
    assert redo.rows == 16 + 8 and run.reused == 1
    np.testing.assert_array_equal(vectors, expected(table))


def test_the_shard_folder_changes_with_the_encoder_the_items_and_the_shard_size(tmp_path):
    ids = items(10)["item_id"].to_numpy()
    base = shard_folder(tmp_path, "raw", "model-a", ids, 16)
    assert base == shard_folder(tmp_path, "raw", "model-a", ids.copy(), 16)
    assert base != shard_folder(tmp_path, "raw", "model-b", ids, 16)
    assert base != shard_folder(tmp_path, "raw", "model-a", ids[::-1], 16)
    assert base != shard_folder(tmp_path, "raw", "model-a", ids, 8)
    assert base != shard_folder(tmp_path, "csft", "model-a", ids, 16)


WORLD = 2


def _worker(rank: int, init_file: str, folder: str, out: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                  world_size=WORLD)
    try:
        encoder = CountingEncoder()
        vectors, run = encode_in_shards(encoder, items(50), Path(folder), "raw", shard_items=16)
        np.savez(Path(out) / f"rank{rank}.npz", rows=encoder.rows, shards=run.shards,
                 vectors=vectors if vectors is not None else np.zeros(0))
    finally:
        torch_dist.destroy_process_group()


def test_two_torchrun_workers_share_the_shards_and_worker_0_gets_every_vector(tmp_path):
    folder = tmp_path / "shards"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(folder), str(tmp_path)), nprocs=WORLD,
             join=True)
    r0, r1 = (np.load(tmp_path / f"rank{r}.npz") for r in range(WORLD))
    assert int(r0["rows"]) == 16 + 16 and int(r1["rows"]) == 16 + 2  # shards 0, 2 and 1, 3
    assert int(r0["shards"]) == 2 and int(r1["shards"]) == 2
    np.testing.assert_array_equal(r0["vectors"], expected(items(50)))
    assert r1["vectors"].size == 0  # worker 1 returns None: worker 0 writes the store
