"""RowAdam (lazy Adam written row-wise) against torch's SparseAdam: the same update of the rows a
step uses, the other rows and their moments unchanged, a state either optimiser can load."""

import copy

import torch
from torch import nn

from mimrec.ctr.row_adam import RowAdam


def _tables(seed: int = 0) -> tuple[nn.Embedding, nn.Embedding]:
    torch.manual_seed(seed)
    a = nn.Embedding(50, 6, sparse=True)
    b = nn.Embedding(50, 6, sparse=True)
    b.weight.data.copy_(a.weight.data)
    return a, b


def _step(table: nn.Embedding, opt: torch.optim.Optimizer, rows: torch.Tensor,
          target: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    ((table(rows) - target) ** 2).sum().backward()
    opt.step()


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):  # repeated rows (summed by coalescing) and rows never used (40..49)
        rows = torch.randint(0, 40, (24,), generator=gen)
        out.append((rows, torch.randn(24, 6, generator=gen)))
    return out


def test_row_adam_gives_sparse_adams_numbers_on_the_used_rows_and_leaves_the_others():
    ours, theirs = _tables()
    row, ref = RowAdam(ours.parameters(), lr=0.01), torch.optim.SparseAdam(theirs.parameters(),
                                                                           lr=0.01)
    start = ours.weight.detach().clone()
    for rows, target in _batches(20):
        _step(ours, row, rows, target)
        _step(theirs, ref, rows, target)
        assert torch.equal(ours.weight, theirs.weight)
    assert torch.equal(ours.weight[40:], start[40:])  # never used: never moved
    assert not torch.equal(ours.weight[:40], start[:40])
    mine, ref_state = row.state[ours.weight], ref.state[theirs.weight]
    assert mine["step"] == ref_state["step"] == 20
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(mine[key], ref_state[key])
        assert torch.equal(mine[key][40:], torch.zeros(10, 6))


def test_a_step_that_uses_a_row_once_moves_only_that_row():
    table, _ = _tables()
    opt = RowAdam(table.parameters(), lr=0.1)
    before = table.weight.detach().clone()
    _step(table, opt, torch.tensor([7]), torch.zeros(1, 6))
    changed = (table.weight != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [7]


def test_row_adam_state_loads_into_sparse_adam_and_back():
    ours, theirs = _tables()
    row = RowAdam(ours.parameters(), lr=0.01)
    batches = _batches(10)
    for rows, target in batches[:5]:
        _step(ours, row, rows, target)
    theirs.weight.data.copy_(ours.weight.data)
    ref = torch.optim.SparseAdam(theirs.parameters(), lr=0.01)
    ref.load_state_dict(copy.deepcopy(row.state_dict()))  # no shared moments
    back = RowAdam(theirs.parameters(), lr=0.01)
    back.load_state_dict(copy.deepcopy(ref.state_dict()))
    for rows, target in batches[5:]:
        _step(ours, row, rows, target)
        _step(theirs, ref, rows, target)
    assert torch.equal(ours.weight, theirs.weight)
    assert back.state[theirs.weight]["step"] == 5


def test_row_adam_refuses_dense_gradients():
    weight = nn.Parameter(torch.zeros(3, 2))
    weight.grad = torch.ones(3, 2)
    try:
        RowAdam([weight]).step()
    except RuntimeError as err:
        assert "sparse" in str(err)
    else:
        raise AssertionError("a dense gradient was accepted")
