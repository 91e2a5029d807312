import numpy as np
import pytest
import torch

from mimrec.ctr.config import ModelConfig, ModelSpec, TrainConfig
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.train import batchable, fit, predict, seed_everything
from mimrec.data.config import DataConfig
from mimrec.data.files import load_files
from mimrec.data.samples import TEST, TRAIN, VALID, build_samples
from mimrec.eval.metrics import auc


@pytest.fixture(scope="module")
def slice_data(ml100k, tmp_path_factory):
    from tests.conftest import write_slice
    folder = write_slice(ml100k, tmp_path_factory.mktemp("ml") / "d", n_users=150)
    cfg = DataConfig(dataset="files", path=str(folder))
    ds = load_files(folder, 4.0, ("title",))
    s = build_samples(ds, cfg)
    tables = build_feature_tables(ds.items, ds.users, len(s.user_ids), cfg.item_features,
                                  cfg.user_features)
    return s, tables


def test_din_learns_on_real_data_and_restores_the_best_epoch(slice_data):
    s, tables = slice_data
    seed_everything(0)
    model = CiUBM(ModelConfig(embedding_dim=8, mlp_units=(32,)), ModelSpec("din"), tables)
    train, valid, test = (batchable(s, k) for k in (TRAIN, VALID, TEST))
    log = fit(model, train, valid, TrainConfig(batch_size=256, lr=3e-3, max_epochs=3, patience=1))
    best = max(r["valid_auc"] for r in log)
    assert auc(valid.label.numpy(), predict(model, valid)) == pytest.approx(best, abs=1e-6)
    assert auc(test.label.numpy(), predict(model, test)) > 0.6


def test_same_seed_same_predictions(slice_data):
    s, tables = slice_data
    train, valid = batchable(s, TRAIN), batchable(s, VALID)
    preds = []
    for _ in range(2):
        seed_everything(3)
        model = CiUBM(ModelConfig(embedding_dim=8, mlp_units=(16,)), ModelSpec("din"), tables)
        fit(model, train, valid, TrainConfig(batch_size=512, max_epochs=1))
        preds.append(predict(model, valid))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-6)


def test_embedding_l2_shrinks_embeddings(slice_data):
    s, tables = slice_data
    train, valid = batchable(s, TRAIN), batchable(s, VALID)
    norms = []
    for l2 in (0.0, 1.0):
        seed_everything(0)
        model = CiUBM(ModelConfig(embedding_dim=8, mlp_units=(16,)), ModelSpec("din"), tables)
        fit(model, train, valid, TrainConfig(batch_size=512, max_epochs=1, embedding_l2=l2))
        norms.append(float(sum(e.weight.detach().norm() for e in model.embeddings())))
    assert norms[1] < norms[0]
    assert torch.get_num_threads() >= 1


def test_ema_weights_are_the_ones_judged_and_restored(slice_data):
    s, tables = slice_data
    train, valid = batchable(s, TRAIN), batchable(s, VALID)
    seed_everything(0)
    plain = CiUBM(ModelConfig(embedding_dim=8, mlp_units=(32,)), ModelSpec("din"), tables)
    seed_everything(0)
    model = CiUBM(ModelConfig(embedding_dim=8, mlp_units=(32,)), ModelSpec("din"), tables)
    cfg = TrainConfig(batch_size=256, lr=3e-3, max_epochs=3, patience=3)
    fit(plain, train, valid, cfg)
    log = fit(model, train, valid, TrainConfig(**{**cfg.__dict__, "ema_decay": 0.9}))
    best = max(r["valid_auc"] for r in log)
    # the model left in place is the best averaged one, not the last step's weights
    assert auc(valid.label.numpy(), predict(model, valid)) == pytest.approx(best, abs=1e-6)
    assert not np.allclose(predict(model, valid), predict(plain, valid))


def test_ema_decay_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
