import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.ctr.config import ModelConfig, ModelSpec
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM


@pytest.fixture
def tables():
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [str(i) for i in range(30)],
                          "genres": [list(rng.choice(["a", "b", "c"], rng.integers(1, 3),
                                                     replace=False)) for _ in range(30)],
                          "year": [str(1990 + i % 5) for i in range(30)]})
    users = pd.DataFrame({"user_id": [str(u) for u in range(8)], "gender": list("MFMFMFMF")})
    return build_feature_tables(items, users, 8, ("genres", "year"), ("gender",))


def _batch(b=6, L=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(1, 9, (b,), generator=g)
    item = torch.randint(1, 31, (b,), generator=g)
    history = torch.randint(1, 31, (b, L), generator=g)
    history[:, :3] = 0  # left padding
    return user, item, history


DIN = ModelSpec("din")
EVERY_BLOCK = ModelSpec("every", ("id_attention", "sa_ta", "simtier", "content_attention",
                                  "target_content"))


@pytest.mark.parametrize("softmax", [False, True])
def test_padding_does_not_change_the_logit(tables, softmax):
    torch.manual_seed(0)
    model = CiUBM(ModelConfig(attention_softmax=softmax), DIN, tables).eval()
    for p in model.parameters():  # embeddings start near zero: make them matter
        torch.nn.init.normal_(p, std=0.3)
    user, item, history = _batch()
    with torch.no_grad():
        base = model(user, item, history)
        longer = torch.cat([torch.zeros(len(user), 5, dtype=torch.long), history], dim=1)
        assert torch.allclose(model(user, item, longer), base, atol=1e-5)
        changed = history.clone()
        changed[:, 3] = (changed[:, 3] % 30) + 1
        assert not torch.allclose(model(user, item, changed), base, atol=1e-5)


def test_permuting_the_batch_permutes_the_scores(tables):
    torch.manual_seed(0)
    model = CiUBM(ModelConfig(), DIN, tables).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    user, item, history = _batch(b=10)
    perm = torch.randperm(10)
    with torch.no_grad():
        assert torch.allclose(model(user, item, history)[perm],
                              model(user[perm], item[perm], history[perm]), atol=1e-5)


def test_switching_off_ids_removes_their_tables(tables):
    full = CiUBM(ModelConfig(), DIN, tables)
    no_ids = CiUBM(ModelConfig(), ModelSpec("no_ids", item_id=False, user_id=False), tables)
    assert full.items.id_embedding is not None and no_ids.items.id_embedding is None
    assert len(no_ids.embeddings()) == len(full.embeddings()) - 2


def test_catalogue_tables_computed_once_give_the_same_logits(tables):
    """Inference passes the catalogue tables computed once; training computes them per batch.
    Both give the same logits, and tables of other weights give other logits."""
    torch.manual_seed(0)
    model = CiUBM(ModelConfig(), EVERY_BLOCK, tables, torch.randn(31, 12)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    user, item, history = _batch()
    with torch.inference_mode():
        tables_once = model.catalogue_tables()
        fresh = model(user, item, history)
        torch.testing.assert_close(model(user, item, history, tables=tables_once), fresh)
        model.items.id_embedding.weight.mul_(3.0)
        assert not torch.allclose(model(user, item, history), fresh, atol=1e-4)
        torch.testing.assert_close(model(user, item, history, tables=tables_once), fresh)


def test_the_model_describes_its_parts(tables):
    model = CiUBM(ModelConfig(simtier_bins=20), ModelSpec("m", ("id_attention", "simtier")),
                  tables, torch.randn(31, 12))
    info = model.describe()
    widths = {part["name"]: part["out_dim"] for part in info["parts"]}
    d = ModelConfig().embedding_dim
    assert widths == {"users": 2 * d, "items": 3 * d, "id_attention": 3 * d, "simtier": 20}
    # the ID tower reads the ID parts; the content residual the content blocks only
    assert info["tower_in"] == widths["users"] + widths["items"] + widths["id_attention"]
    assert info["residual_in"] == widths["simtier"]
    assert info["params"] == sum(p.numel() for p in model.parameters())


def test_item_id_dropout_hides_the_target_id_in_training_only(tables):
    torch.manual_seed(0)
    cfg = ModelConfig(item_id_dropout=1.0, dropout=0.0, batch_norm=False)
    model = CiUBM(cfg, DIN, tables)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    user, item, history = _batch()
    other = item.clone()
    other[0] = 2 if int(item[0]) != 2 else 3
    # give both target items the same features, so only their ID embeddings differ
    for bag in model.items.features:
        bag.index[int(other[0])] = bag.index[int(item[0])]
    with torch.no_grad():
        model.train()
        assert torch.allclose(model(user, item, history)[0], model(user, other, history)[0])
        model.eval()
        assert not torch.allclose(model(user, item, history)[0], model(user, other, history)[0])


def test_item_id_dropout_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match="item_id_dropout"):
        ModelConfig(item_id_dropout=1.5)
