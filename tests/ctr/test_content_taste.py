"""The content-taste block: a per-user taste in content space (a user x content factorisation)
and the mean content of the user's behaviours, each met with the target's content. It must
learn a user-specific content preference that reaches items no ID was trained for, and be
nothing at the start."""

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from mimrec.ctr.blocks import Behaviours, BlockDims, CatalogueTables, ContentTaste
from mimrec.ctr.config import ModelConfig, ModelSpec, TrainConfig
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.train import Batchable, fit, predict

N_USERS, N_ITEMS, E = 40, 200, 8
CFG = ModelConfig(mlp_units=(16,), residual_units=(8,), content_proj_dim=8)
TASTE = ModelSpec("taste", ("id_attention", "content_taste"), init_from="din")


def _world(seed=0):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(N_ITEMS + 1, E, generator=g)
    taste = torch.randn(N_USERS + 1, E, generator=g)
    return content, taste


def _data(n, seed, items, content, taste):
    """Each user clicks items whose content matches their own taste (a user-specific content
    preference: no item is good for everyone, so item IDs alone cannot learn it)."""
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(1, N_USERS + 1, (n,), generator=g)
    item = items[torch.randint(0, len(items), (n,), generator=g)]
    history = torch.zeros(n, 4, dtype=torch.long)  # no behaviours: only the taste can learn it
    logit = 2.0 * (taste[user] * torch.nn.functional.normalize(content[item], dim=-1)).sum(-1)
    label = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    return Batchable(user, item, history, label)


def _tables():
    items = pd.DataFrame({"item_id": [str(i) for i in range(N_ITEMS)]})
    return build_feature_tables(items, None, N_USERS, (), ())


def test_the_taste_learns_a_user_content_preference_that_reaches_unseen_items():
    content, taste = _world()
    warm, cold = torch.arange(1, 151), torch.arange(151, N_ITEMS + 1)
    train = _data(6000, 1, warm, content, taste)
    valid = _data(1500, 2, warm, content, taste)
    test_cold = _data(1500, 3, cold, content, taste)
    tables, cfg = _tables(), TrainConfig(batch_size=256, max_epochs=8, lr=0.01, patience=8)
    torch.manual_seed(0)
    din = CiUBM(CFG, ModelSpec("din"), tables)
    fit(din, train, valid, cfg)
    torch.manual_seed(0)
    model = CiUBM(CFG, TASTE, tables, content)
    model.start_from(din.state_dict())
    log = fit(model, train, valid, cfg, judge_start=True)
    assert max(r["valid_auc"] for r in log) > log[0]["valid_auc"] + 0.05
    din_auc = roc_auc_score(test_cold.label, predict(din, test_cold))
    taste_auc = roc_auc_score(test_cold.label, predict(model, test_cold))
    assert din_auc < 0.6 < taste_auc, (din_auc, taste_auc)


def test_an_unknown_user_and_an_empty_history_add_nothing():
    torch.manual_seed(0)
    block = ContentTaste(E, 4, N_USERS, 0.0)
    content = torch.randn(6, E)
    tables = CatalogueTables(torch.zeros(6, 2), content)
    history = torch.tensor([[0, 0], [2, 3]])
    ctx = Behaviours(torch.zeros(2, 2), torch.tensor([1, 1]), history, history > 0, None, tables,
                     torch.tensor([0, 5]))
    out = block(ctx, block.prepare(tables))
    assert out.shape == (2, 8)
    assert torch.equal(out[0], torch.zeros(8))  # user 0 (unknown), no behaviours
    projected = block.projection(content)
    expected = projected[[2, 3]].mean(0) * projected[1]
    assert torch.allclose(out[1, 4:], expected, atol=1e-6)
    assert ContentTaste.build(BlockDims(2, E, N_USERS), CFG).taste.num_embeddings == N_USERS + 1
