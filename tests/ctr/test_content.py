import pandas as pd
import pytest
import torch

from mimrec.ctr.blocks import reads_content
from mimrec.ctr.config import CtrConfig, ModelConfig
from mimrec.ctr.content import ContentSimilarity, SimTier, retrieve_top_k
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.variants import preset

N_ITEMS, E = 30, 12


@pytest.fixture
def tables():
    items = pd.DataFrame({"item_id": [str(i) for i in range(N_ITEMS)],
                          "genres": [["a", "b"][i % 2] for i in range(N_ITEMS)]})
    users = pd.DataFrame({"user_id": [str(u) for u in range(5)], "gender": list("MFMFM")})
    return build_feature_tables(items, users, 5, ("genres",), ("gender",))


def _content(seed=0, n=N_ITEMS + 1):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, E, generator=g)
    c[0] = 0
    return c


def _model(tables, variant="ciubm", **kw):
    torch.manual_seed(0)
    cfg = CtrConfig(model=ModelConfig(**kw))
    model = CiUBM(cfg.model, preset(cfg, variant), tables, _content()).eval()
    for name, p in model.named_parameters():
        # as if trained: the content residual's last layer and the cold ID's gate start at 0
        if "embedding" in name or name.startswith("residual.") or name.endswith("gate"):
            torch.nn.init.normal_(p, std=0.3)
    return model


def _batch():
    user = torch.tensor([1, 2, 3])
    item = torch.tensor([4, 5, 6])
    history = torch.tensor([[0, 0, 1, 2, 3], [0, 7, 8, 9, 10], [11, 12, 13, 14, 15]])
    return user, item, history


@pytest.mark.parametrize("variant", ["ciubm", "content_only"])
@pytest.mark.parametrize("k", [0, 3])
def test_padding_invariance_with_content_modules(tables, variant, k):
    every = ("sa_ta", "simtier", "content_attention", "target_content", "cold_id")
    model = _model(tables, variant, retrieval_k=k, ciubm_modules=every)
    model.mark_trained(torch.arange(1, 8))  # most items here get a generated ID
    user, item, history = _batch()
    with torch.no_grad():
        base = model(user, item, history)
        padded = torch.cat([torch.zeros(3, 4, dtype=torch.long), history], dim=1)
        torch.testing.assert_close(model(user, item, padded), base)


def test_a_new_item_is_scored_from_its_content(tables):
    """An item added after training (index past the ID tables) gets a score that depends on its
    content vector, while DIN cannot tell two new items apart."""
    model = _model(tables)
    user, _, history = _batch()
    new = N_ITEMS + 1  # never in training: no ID embedding
    scores = []
    for seed in (1, 2):
        content = torch.cat([_content(), _content(seed, 2)[1:]])  # append the new item's vector
        model.set_content(content)
        with torch.no_grad():
            scores.append(model(user, torch.full((3,), new), history))
    assert not torch.allclose(scores[0], scores[1])
    din = _model(tables, "din")
    with torch.no_grad():
        a = din(user, torch.full((3,), new), history)
        b = din(user, torch.zeros(3, dtype=torch.long), history)
    torch.testing.assert_close(a, b)  # an unknown id reads as the padding row


def test_content_modules_need_content(tables):
    with pytest.raises(ValueError, match="reads content vectors"):
        CiUBM(ModelConfig(), preset(CtrConfig(), "ciubm"), tables, None)


def test_simtier_counts_valid_similarities_per_bin():
    tier = SimTier(bins=4)  # bins: [-1,-.5) [-.5,0) [0,.5) [.5,1]
    sims = torch.tensor([[-0.9, 0.1, 0.2, 0.99, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    out = tier(sims, mask)
    expected = torch.log1p(torch.tensor([[1.0, 0.0, 2.0, 1.0]]))
    torch.testing.assert_close(out, expected)


def test_retrieval_keeps_the_most_similar_in_sequence_order():
    sims = torch.tensor([[0.1, 0.9, 0.0, 0.5, 0.7]])
    mask = torch.tensor([[False, True, True, True, True]])
    assert retrieve_top_k(sims, mask, 3).tolist() == [[1, 3, 4]]
    sims = torch.tensor([[0.9, 0.8, 0.1]])
    mask = torch.tensor([[False, False, True]])
    assert retrieve_top_k(sims, mask, 2)[0, -1].item() == 2  # the only valid one survives


def _cold_id_model(tables):
    model = _model(tables, ciubm_modules=("sa_ta", "cold_id"))
    model.mark_trained(torch.arange(1, 21))  # items 21..30 were never a train target
    return model


def test_cold_id_scores_an_added_item_from_its_content_and_ablation_drops_it(tables):
    model = _cold_id_model(tables)
    user, _, history = _batch()
    new = N_ITEMS + 1
    model.set_content(torch.cat([_content(), _content(1, 2)[1:]]))
    with torch.no_grad():
        target = model.catalogue_tables().vectors[new, :model.cfg.embedding_dim]
        cold = model.items.cold_id  # an added item has no ID of its own: it reads the
        # padding row (zero in a trained model; randomised here), plus all of the generated part
        own = model.items.id_embedding.weight[0]
        torch.testing.assert_close(target, own + cold.gate * cold.map(model.content[new]))
        model(user, torch.full((3,), new), history)  # the extended catalogue is readable
    cfg = CtrConfig(model=ModelConfig(ciubm_modules=("sa_ta", "cold_id")))
    ablation = preset(cfg, "ciubm_no_cold_id")
    assert not ablation.cold_id and ablation.blocks == ("id_attention", "sa_ta")
    assert not reads_content(preset(cfg, "din"))


def test_cold_id_regression_does_not_move_id_embeddings(tables):
    model = _cold_id_model(tables).train()
    (loss,) = model.auxiliary_losses(torch.tensor([1, 2, 3]))
    loss.backward()
    assert loss.item() > 0
    assert model.items.id_embedding.weight.grad is None
    assert model.items.cold_id.map.weight.grad.abs().sum() > 0
    din = _model(tables, "din")
    assert din.auxiliary_losses(torch.tensor([1])) == []


def test_cosines_are_per_batch_and_slices_of_a_long_sequence_change_nothing():
    """No (N, N) table: a long history's cosines, read in slices or as one product over the
    distinct items, equal the plain dot products of the normalised vectors."""
    g = torch.Generator().manual_seed(3)
    content = torch.nn.functional.normalize(torch.randn(500, E, generator=g), dim=-1)
    item = torch.randint(1, 500, (4,), generator=g)
    history = torch.randint(0, 500, (4, 1000), generator=g)
    mask = history > 0
    want = (content[item].unsqueeze(1) * content[history]).sum(-1) * mask  # (B, L)
    for chunk in (7, 128, 1000, 5000):
        for distinct in (0, 64):  # each behaviour gathered / one product over distinct items
            got = ContentSimilarity(chunk, distinct)(content, item, history, mask)
            torch.testing.assert_close(got, want)
    cfg = CtrConfig(model=ModelConfig(retrieval_k=5))
    model = CiUBM(cfg.model, preset(cfg, "ciubm"), tables_of(499), content)
    square = [n for n, b in model.named_buffers() if b.ndim == 2 and b.shape[1] >= 500]
    assert model.content.shape == (500, E) and not square  # nothing item x item


def tables_of(n_items):
    items = pd.DataFrame({"item_id": [str(i) for i in range(n_items)],
                          "genres": [["a", "b"][i % 2] for i in range(n_items)]})
    users = pd.DataFrame({"user_id": [str(u) for u in range(5)], "gender": list("MFMFM")})
    return build_feature_tables(items, users, 5, ("genres",), ("gender",))


def test_gsu_on_a_long_sequence_keeps_the_top_k_and_scores_as_that_subsequence(tables):
    """GSU top-K over 600 behaviours: the logit is the one of the K most similar behaviours
    alone (in their order), and they are the K largest cosines."""
    model = _model(tables, retrieval_k=4)
    g = torch.Generator().manual_seed(5)
    user, item = torch.tensor([1, 2]), torch.tensor([3, 9])
    history = torch.randint(1, N_ITEMS + 1, (2, 600), generator=g)
    history[0, :250] = 0  # one shorter history (left padding)
    mask = history > 0
    sims = model.similarity(model.content, item, history, mask)  # (2, 600)
    keep = retrieve_top_k(sims, mask, 4)  # (2, 4)
    kept = sims.gather(1, keep)
    for b in range(2):
        assert kept[b].min() >= sims[b][mask[b]].topk(4).values.min()
    assert (keep.diff(dim=1) > 0).all()  # sequence order kept
    with torch.no_grad():
        torch.testing.assert_close(model(user, item, history),
                                   model(user, item, history.gather(1, keep)))


@pytest.mark.parametrize("variant", ["din", "ciubm", "content_only"])
@pytest.mark.parametrize("softmax", [False, True])
@pytest.mark.parametrize("k", [0, 3])
def test_one_users_candidates_score_as_the_copied_batch(tables, variant, softmax, k):
    # a scoring request expands one history over its candidates (stride 0): the blocks do the
    # per-sequence work once, and every logit equals the one of the copied (B, L) batch
    every = ("sa_ta", "simtier", "content_attention", "target_content", "content_taste",
             "cold_id")
    model = _model(tables, variant, retrieval_k=k, ciubm_modules=every, attention_softmax=softmax)
    model.mark_trained(torch.arange(1, 8))
    item = torch.tensor([4, 5, 6, 20, 29])
    user = torch.full((5,), 2)
    for row in ([0, 0, 1, 2, 3], [0, 0, 0, 0, 0], [11, 12, 13, 14, 15]):
        shared = torch.tensor([row]).expand(5, -1)
        with torch.no_grad():
            for batch_tables in (False, True):
                model.batch_tables = batch_tables
                torch.testing.assert_close(model(user, item, shared),
                                           model(user, item, shared.contiguous()))
