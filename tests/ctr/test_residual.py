"""A content model starts as exactly its ID model and can only add (issue #13): the content
residual starts at zero, the cold ID's gate at 0, a model started from a trained DIN trains only
its content parts, and the starting point stays a candidate on valid."""

import copy
from dataclasses import replace

import pandas as pd
import pytest
import torch

from mimrec.ctr.config import CtrConfig, ModelConfig, ModelSpec, TrainConfig
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.train import Batchable, fit, predict, train_epoch
from mimrec.ctr.variants import model_specs

N_ITEMS, E = 30, 12
CFG = ModelConfig(mlp_units=(16,), residual_units=(8,))
CIUBM = ModelSpec("ciubm", ("id_attention", "sa_ta", "simtier", "content_attention",
                            "target_content", "content_taste"), cold_id=True, init_from="din")


@pytest.fixture
def tables():
    return small_tables(N_ITEMS)


def small_tables(n_items: int):
    """Feature tables of ``n_items`` items (genres a/b/c) and 6 users (gender)."""
    items = pd.DataFrame({"item_id": [str(i) for i in range(n_items)],
                          "genres": [["a", "b", "c"][i % 3] for i in range(n_items)]})
    users = pd.DataFrame({"user_id": [str(u) for u in range(6)], "gender": list("MFMFMF")})
    return build_feature_tables(items, users, 6, ("genres",), ("gender",))


def _content(seed=0, n=N_ITEMS + 1):
    return torch.randn(n, E, generator=torch.Generator().manual_seed(seed))


def _data(n, seed, flip=False, cold=False):
    """Clicks driven by the content of the target; ``flip`` inverts that on purpose. Targets
    are items 1..20 (train), or with ``cold`` items 21..30, which training never sees."""
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(1, 7, (n,), generator=g)
    item = torch.randint(21, 31, (n,), generator=g) if cold else torch.randint(1, 21, (n,), generator=g)
    history = torch.randint(0, N_ITEMS + 1, (n, 6), generator=g).sort(dim=1).values
    signal = _content()[item, 0] > 0
    label = (signal ^ flip).float()
    return Batchable(user, item, history, label)


def _trained_din(tables):
    torch.manual_seed(0)
    din = CiUBM(CFG, ModelSpec("din"), tables)
    fit(din, _data(256, 1), _data(128, 2), TrainConfig(batch_size=64, max_epochs=2, lr=0.01))
    return din.eval()


def _started(tables, din, content=None):
    torch.manual_seed(1)
    model = CiUBM(CFG, CIUBM, tables, _content() if content is None else content)
    model.mark_trained(_data(256, 1).item)
    model.start_from(din.state_dict())
    return model.eval()


def _batch():
    data = _data(40, 3)
    data.item[:5] = torch.arange(21, 26)  # cold targets too
    return data.user, data.item, data.history


def test_a_content_model_started_from_din_computes_exactly_din(tables):
    din = _trained_din(tables)
    model = _started(tables, din)
    with torch.no_grad():
        assert torch.equal(model(*_batch()), din(*_batch()))
        # whatever the content says: it has no say until training gives it one
        model.set_content(_content(seed=5))
        assert torch.equal(model(*_batch()), din(*_batch()))


def test_content_parts_start_at_zero_even_from_scratch(tables):
    torch.manual_seed(0)
    model = CiUBM(CFG, CIUBM, tables, _content()).eval()
    model.mark_trained(_data(256, 1).item)
    with torch.no_grad():
        before = model(*_batch())
        model.set_content(_content(seed=5))
        assert torch.equal(model(*_batch()), before)


def test_training_from_din_moves_only_the_content_parts(tables):
    din = _trained_din(tables)
    model = _started(tables, din)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k in din.state_dict()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    train_epoch(model, _data(256, 1), opt, TrainConfig(batch_size=64), None, 1)
    after = model.state_dict()
    for key, value in frozen.items():  # ID weights and batch-norm statistics alike
        assert torch.equal(after[key], value), key
    assert model.items.cold_id.gate.item() != 0.0
    assert model.residual.net[-1].weight.abs().sum() > 0
    assert model.describe()["frozen_params"] == sum(p.numel() for p in din.parameters())


def test_content_that_hurts_valid_leaves_the_model_equal_to_din(tables):
    """Content that predicts train clicks but misleads on valid: the start (epoch 0) stays best,
    so the model's predictions are DIN's, bit for bit."""
    din = _trained_din(tables)
    model = _started(tables, din)
    valid = _data(256, 4, flip=True, cold=True)
    log = fit(model, _data(256, 1), valid, TrainConfig(batch_size=64, max_epochs=3, lr=0.01,
                                                       patience=3), judge_start=True)
    assert log[0]["epoch"] == 0 and max(r["valid_auc"] for r in log[1:]) < log[0]["valid_auc"]
    assert (predict(model, valid) == predict(din, valid)).all()


def test_content_that_helps_valid_is_kept(tables):
    din = _trained_din(tables)
    model = _started(tables, din)
    valid = _data(256, 4, cold=True)
    log = fit(model, _data(256, 1), valid, TrainConfig(batch_size=64, max_epochs=3, lr=0.01,
                                                       patience=3), judge_start=True)
    assert max(r["valid_auc"] for r in log) > log[0]["valid_auc"]


def test_cold_id_defers_to_the_own_id_as_the_train_count_grows(tables):
    torch.manual_seed(0)
    model = CiUBM(CFG, CIUBM, tables, _content()).eval()
    model.mark_trained(torch.tensor([1] * 50 + [2] * 2))  # item 1 often, 2 twice, 3 never
    cold = model.items.cold_id
    with torch.no_grad():
        cold.gate.fill_(1.0)
        items = torch.tensor([0, 1, 2, 3])
        own = model.items.id_embedding(items)
        added = model.items(items, model.content)[:, :CFG.embedding_dim] - own
        generated = cold.map(model.content[items])
    k = CFG.cold_id_halfway
    torch.testing.assert_close(added[0], torch.zeros(CFG.embedding_dim))  # padding stays 0
    for row, count in ((1, 50), (2, 2), (3, 0)):
        torch.testing.assert_close(added[row], generated[row] * k / (k + count))


def test_the_replace_blend_hands_a_rarely_trained_id_over_to_content(tables):
    torch.manual_seed(0)
    cfg = replace(CFG, cold_id_blend="replace")
    model = CiUBM(cfg, CIUBM, tables, _content()).eval()
    model.mark_trained(torch.tensor([1] * 50 + [2] * 2))
    cold = model.items.cold_id
    items = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        at_start = model.items(items, model.content)[:, :CFG.embedding_dim]
        own = model.items.id_embedding(items)
        torch.testing.assert_close(at_start, own)  # gate 0: the ID model's vectors
        cold.gate.fill_(1.0)
        blended = model.items(items, model.content)[:, :CFG.embedding_dim]
        generated = cold.map(model.content[items])
    k = CFG.cold_id_halfway
    torch.testing.assert_close(blended[0], torch.zeros(CFG.embedding_dim))  # padding stays 0
    for row, count in ((1, 50), (2, 2), (3, 0)):
        w = k / (k + count)
        torch.testing.assert_close(blended[row], (1 - w) * own[row] + w * generated[row])


def test_ciubm_presets_start_from_din_when_the_run_trains_it():
    specs = model_specs(CtrConfig(variants=("din", "ciubm", "ciubm_raw")))
    assert [s.init_from for s in specs] == ["", "din", "din"]
    assert model_specs(CtrConfig(variants=("ciubm",)))[0].init_from == ""
    off = CtrConfig(model=ModelConfig(ciubm_from_din=False), variants=("din", "ciubm"))
    assert model_specs(off)[1].init_from == ""


def test_a_start_that_does_not_start_from_scratch_is_refused():
    from mimrec.errors import ConfigError
    chained = CtrConfig(variants=("din", "ciubm"),
                        models=(ModelSpec("again", ("id_attention", "simtier"), init_from="ciubm"),))
    with pytest.raises(ConfigError, match="starts from 'ciubm'"):
        model_specs(chained)


def test_start_weights_with_content_parts_are_refused(tables):
    din = _trained_din(tables)
    other = copy.deepcopy(din.state_dict())
    other["blocks.simtier.simtier.weight"] = torch.ones(3)
    with pytest.raises(ValueError, match="lacks"):
        CiUBM(CFG, ModelSpec("x", ("id_attention",)), tables).start_from(other)
