"""Sparse updates (``ctr.train.sparse_updates``, issue #15): a step touches only the embedding
rows its batch uses; the lazily kept weight average equals the dense one; L2 applies to the used
rows; the optimiser's state survives a checkpoint; training with it learns."""

import copy
from dataclasses import replace

import torch
from torch import nn

from mimrec.ctr.config import ModelSpec, TrainConfig
from mimrec.ctr.model import CiUBM
from mimrec.ctr.sparse_updates import SplitAdam, add_row_l2, coalesce_rows, make_optimizer
from mimrec.ctr.train import fit, predict, train_epoch
from mimrec.ctr.weight_average import WeightAverage
from mimrec.eval.metrics import auc
from tests.ctr.test_residual import CFG, N_ITEMS, _data, small_tables

SPARSE = TrainConfig(batch_size=16, lr=0.01, embedding_l2=0.1, sparse_updates=True)


def _din(seed=0):
    torch.manual_seed(seed)
    return CiUBM(CFG, ModelSpec("din"), small_tables(N_ITEMS))


def test_a_step_leaves_the_rows_it_did_not_use_untouched():
    model = _din()
    opt, tables = make_optimizer(model, SPARSE.lr, True)
    assert isinstance(opt, SplitAdam) and tables and all(t.sparse for t in tables)
    item_table = model.items.id_embedding
    before = item_table.weight.detach().clone()
    data = _data(16, 1)
    used = torch.unique(torch.cat([data.item, data.history.flatten()]))
    train_epoch(model, data, opt, SPARSE, None, 1)  # one step: 16 rows, batch 16
    after = item_table.weight.detach()
    unused = torch.ones(len(before), dtype=torch.bool)
    unused[used] = False
    assert unused.any() and torch.equal(after[unused], before[unused])
    assert not torch.equal(after[used[used > 0]], before[used[used > 0]])


def test_coalescing_without_a_sort_gives_the_rows_and_sums_of_coalesce():
    """The three paths of ``coalesce_rows``: rows already unique and increasing (marked only), a
    small table hit many times (summed densely), a large table with repeats (torch's coalesce)."""
    gen = torch.Generator().manual_seed(0)
    unique = torch.tensor([1, 4, 9, 30])
    cases = {"unique rows": (50, unique),
             "small table": (20, torch.randint(1, 20, (500,), generator=gen)),
             "large table": (10_000, torch.randint(1, 10_000, (300,), generator=gen)),
             "one row": (7, torch.tensor([3]))}
    for name, (rows, idx) in cases.items():
        values = torch.randn(len(idx), 4, generator=gen)
        grad = torch.sparse_coo_tensor(idx.unsqueeze(0), values, (rows, 4),
                                       check_invariants=True)
        got, want = coalesce_rows(grad), grad.coalesce()
        assert got.is_coalesced(), name
        assert torch.equal(got._indices(), want._indices()), name
        torch.testing.assert_close(got._values(), want._values(), msg=name)
    marked = coalesce_rows(torch.sparse_coo_tensor(unique.unsqueeze(0), torch.ones(4, 2), (50, 2),
                                                   check_invariants=True))
    assert torch.equal(marked._values(), torch.ones(4, 2))  # no copy of the values needed


def test_row_l2_is_the_dense_penalty_gradient_on_the_used_rows():
    table = nn.Embedding(10, 4, sparse=True)
    rows = torch.tensor([1, 3, 3, 7])
    table(rows).sum().backward()
    add_row_l2([table], 0.5)
    dense = nn.Embedding(10, 4)
    dense.weight.data.copy_(table.weight.data)
    (dense(rows).sum() + 0.25 * dense.weight.pow(2).sum()).backward()
    got = table.weight.grad.to_dense()
    for r in range(10):
        if r in (1, 3, 7):
            assert torch.allclose(got[r], dense.weight.grad[r])
        else:
            assert torch.equal(got[r], torch.zeros(4))


def test_the_lazy_weight_average_equals_the_dense_one():
    model = _din()
    opt, tables = make_optimizer(model, SPARSE.lr, True)
    lazy = WeightAverage(model, 0.9, tables)
    dense = copy.deepcopy(model)
    names = [k for k, v in dense.state_dict().items() if v.is_floating_point()]
    for step in range(12):
        data = _data(16, 100 + step)
        decay = min(0.9, (1 + step) / (10 + step))
        train_epoch(model, data, opt, SPARSE, None, 1, lazy)
        with torch.no_grad():
            state, live = dense.state_dict(), model.state_dict()
            for k in names:
                state[k].lerp_(live[k], 1 - decay)
    lazy.sync()
    got = lazy.module.state_dict()
    for k in names:
        assert torch.allclose(got[k], dense.state_dict()[k], atol=1e-6), k


def test_the_split_optimiser_resumes_from_its_saved_state():
    model = _din()
    opt, _ = make_optimizer(model, SPARSE.lr, True)
    train_epoch(model, _data(64, 1), opt, SPARSE, None, 1)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    torch.manual_seed(7)
    train_epoch(model, _data(64, 2), opt, SPARSE, None, 2)
    other = _din(seed=5)
    other.load_state_dict(saved_model)
    opt2, _ = make_optimizer(other, SPARSE.lr, True)
    opt2.load_state_dict(saved_opt)
    torch.manual_seed(7)
    train_epoch(other, _data(64, 2), opt2, SPARSE, None, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k


def test_training_with_sparse_updates_learns_like_dense():
    valid = _data(256, 2)
    scores = {}
    for sparse in (False, True):
        model = _din()
        cfg = replace(SPARSE, sparse_updates=sparse, max_epochs=4, batch_size=32,
                      ema_decay=0.9)
        fit(model, _data(512, 1), valid, cfg)
        scores[sparse] = auc(valid.label.numpy(), predict(model, valid))
    assert scores[True] > 0.6
    assert abs(scores[True] - scores[False]) < 0.1, scores


def test_a_stage_with_many_id_rows_suggests_sparse_updates_and_trains_with_them(artifacts,
                                                                                 tmp_path,
                                                                                 monkeypatch):
    import io

    from rich.console import Console

    from mimrec.ctr import stage
    from mimrec.ctr.config import CtrConfig, ModelConfig

    data_cfg, data, index = artifacts
    monkeypatch.setattr(stage, "DENSE_ROWS_HINT", 10)
    train = TrainConfig(max_epochs=1, seeds=(0,), threads=1, embedding_l2=0.05, ema_decay=0.9)
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,)), variants=("din",), train=train)
    texts = []
    for sparse in (False, True):
        terminal = io.StringIO()
        cfg = replace(cfg, train=replace(train, sparse_updates=sparse))
        records = stage.run_ctr(cfg, data_cfg, data, tmp_path / f"ctr-{sparse}",
                                Console(file=terminal, width=200), index_dir=index)
        texts.append(terminal.getvalue())
        assert records["din-seed0"]["test"]["auc"] > 0.55
    assert "--set ctr.train.sparse_updates=true" in texts[0]
    assert "sparse_updates" not in texts[1]
