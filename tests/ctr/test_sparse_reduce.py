"""Under torchrun the sparse embedding gradients are all-gathered row by row (gloo), not left to
DDP: two ranks' gathered gradient is their dense mean, coalesced, on every rank, whatever
capacity the one packed buffer starts from."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mimrec.ctr.data_parallel import reduce_sparse_gradients

ROWS = {0: ([1, 3, 3, 9], [2]), 1: ([3, 4], [])}  # rank -> (rows of table a, rows of table b)


def _tables(rank: int) -> list[nn.Embedding]:
    torch.manual_seed(0)
    a, b = nn.Embedding(12, 4, sparse=True), nn.Embedding(5, 2, sparse=True)
    rows_a, rows_b = ROWS[rank]
    loss = a(torch.tensor(rows_a)).pow(2).sum() * (rank + 1)
    if rows_b:  # rank 1 leaves table b without a gradient
        loss = loss + b(torch.tensor(rows_b)).sum()
    loss.backward()
    return [a, b]


def _rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    tables = _tables(rank)
    capacity = reduce_sparse_gradients(tables, 2, torch.device("cpu"))  # too small: twice
    grads = [t.weight.grad for t in tables]
    again = []  # at the capacity it returned (one gather), and at one too small for a rank
    for start in (capacity, 40):
        tables = _tables(rank)
        kept = reduce_sparse_gradients(tables, 2, torch.device("cpu"), start)
        again.append(([t.weight.grad.to_dense() for t in tables], kept))
    torch.save({"dense": [g.to_dense() for g in grads],
                "coalesced": [g.is_coalesced() for g in grads],
                "rows": [g._indices()[0].tolist() for g in grads],
                "capacity": capacity, "again": again}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_ranks_sparse_gradients_are_gathered_into_their_mean(tmp_path):
    out = str(tmp_path / "grads")
    mp.spawn(_rank, args=(f"file://{tmp_path / 'store'}", out), nprocs=2, join=True)
    expected = []
    for rank in (0, 1):
        tables = _tables(rank)
        expected.append([t.weight.grad.to_dense() if t.weight.grad is not None
                         else torch.zeros_like(t.weight) for t in tables])
    mean = [(expected[0][i] + expected[1][i]) / 2 for i in range(2)]
    results = [torch.load(f"{out}.{rank}") for rank in (0, 1)]
    for got in results:
        assert got["coalesced"] == [True, True]
        assert got["rows"] == [[1, 3, 4, 9], [2]]
        for i in range(2):
            assert torch.allclose(got["dense"][i], mean[i], atol=1e-6)
    assert all(torch.equal(results[0]["dense"][i], results[1]["dense"][i]) for i in range(2))
    for got in results:
        (at_capacity, kept), (grown, regrown) = got["again"]
        assert kept == got["capacity"] == regrown == results[0]["capacity"]
        for i in range(2):
            assert torch.equal(at_capacity[i], got["dense"][i])
            assert torch.equal(grown[i], got["dense"][i])
