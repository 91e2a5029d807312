"""Cold dropout (issue #13): a content model's own item-ID dropout. In training only, a target is
shown as an item training never saw (its ID part replaced by the cold ID's generated embedding),
so the content parts learn on real targets what a cold item needs; off, the model is today's to
the last digit; DIN never gets it, and retraining the content model alone keeps its DIN."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.config import load_config
from mimrec.ctr.config import CiubmTraining, CtrConfig, ModelConfig, ModelSpec, TrainConfig
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.stage import run_ctr
from mimrec.ctr.variants import model_specs
from mimrec.errors import ConfigError

from .test_residual import CIUBM, N_ITEMS, _content, _data, small_tables

CFG = ModelConfig(mlp_units=(16,), residual_units=(8,), dropout=0.0, batch_norm=False)


@pytest.fixture
def tables():
    return small_tables(N_ITEMS)




def _model(tables, din, spec, gate=0.7):
    torch.manual_seed(1)
    model = CiUBM(CFG, spec, tables, _content())
    model.mark_trained(_data(256, 1).item)
    model.start_from(din.state_dict())
    with torch.no_grad():
        model.items.cold_id.gate.fill_(gate)  # a trained cold ID: the generated part counts
        for p in model.residual.parameters():
            torch.nn.init.normal_(p, std=0.3)  # a trained residual: content moves the logit
    return model


def _batch_without_targets_in_histories():
    data = _data(40, 3)
    history = torch.where(torch.isin(data.history, data.item), 0, data.history)
    return data.user, data.item, history


def _din(tables):
    torch.manual_seed(0)
    return CiUBM(CFG, ModelSpec("din"), tables).eval()


def test_off_is_todays_model_and_draws_no_random_numbers(tables):
    din = _din(tables)
    model = _model(tables, din, CIUBM)
    assert CIUBM.cold_dropout == 0.0 and CtrConfig().ciubm == CiubmTraining()
    batch = _batch_without_targets_in_histories()
    with torch.no_grad():
        model.eval()
        expected = model(*batch)
        model.train()
        state = torch.get_rng_state()
        trained = model(*batch)
        assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(trained, expected, rtol=0, atol=0)


def test_training_shows_targets_as_items_never_trained_and_eval_does_not(tables):
    din = _din(tables)
    model = _model(tables, din, replace(CIUBM, cold_dropout=1.0))
    batch = _batch_without_targets_in_histories()
    user, item, history = batch
    # the same model with the batch's targets made cold: no own ID, no train impressions
    cold = _model(tables, din, CIUBM)
    with torch.no_grad():
        cold.items.id_embedding.weight[item] = 0.0
        cold.items.cold_id.train_count[item] = 0
        model.train()
        shown = model(*batch)
        model.eval()
        served = model(*batch)
        expected = cold.eval()(*batch)
    torch.testing.assert_close(shown, expected)
    assert (shown - served).abs().max() > 1e-3  # eval scores the trained targets as trained


def _cold_shares(weight: str, p: float) -> list[float]:
    """The share of train rows shown cold for targets trained 0, k (= 10) and 990 times."""
    tab = build_feature_tables(pd.DataFrame({"item_id": ["a", "b", "c"]}),
                               pd.DataFrame({"user_id": ["u"]}), 1, (), ())
    spec = ModelSpec("c", ("id_attention", "simtier"), cold_dropout=p, cold_dropout_weight=weight)
    model = CiUBM(CFG, spec, tab, torch.randn(4, 5))  # no cold ID: a cold ID part is zeros
    model.mark_trained(torch.tensor([2] * 10 + [3] * 990))
    model.train()
    torch.manual_seed(0)
    n = 4000
    item = torch.tensor([1, 2, 3]).repeat_interleave(n)
    shown = model._show_cold(torch.ones(3 * n, model.items.out_dim), item)
    return (shown[:, :CFG.embedding_dim] == 0).all(-1).float().reshape(3, n).mean(1).tolist()


def test_rare_weight_shows_rarely_trained_targets_cold_most():
    k = CFG.cold_id_halfway
    assert _cold_shares("rare", 1.0) == pytest.approx([k / (k + n) for n in (0, 10, 990)],
                                                      abs=0.03)
    assert _cold_shares("uniform", 0.5) == pytest.approx([0.5] * 3, abs=0.03)


def test_only_the_ciubm_presets_get_it_and_bad_values_are_refused():
    cfg = load_config(None, ["ctr.ciubm.cold_dropout=0.3", "ctr.ciubm.cold_dropout_weight=rare",
                             "ctr.variants=['din', 'ciubm', 'ciubm_raw', 'ciubm_no_cold_id', "
                             "'content_only']"]).ctr
    got = {s.name: (s.cold_dropout, s.cold_dropout_weight) for s in model_specs(cfg)}
    assert got == {"din": (0.0, "uniform"), "content_only": (0.0, "uniform"),
                   "ciubm": (0.3, "rare"), "ciubm_raw": (0.3, "rare"),
                   "ciubm_no_cold_id": (0.3, "rare")}
    with pytest.raises(ConfigError, match=r"ctr.ciubm.cold_dropout = 1.5 is out of range"):
        load_config(None, ["ctr.ciubm.cold_dropout=1.5"])
    with pytest.raises(ConfigError, match="cold_dropout_weight"):
        load_config(None, ["ctr.ciubm.cold_dropout_weight=often"])
    with pytest.raises(ValueError, match="cold_dropout needs item_id"):
        ModelSpec("x", item_id=False, cold_dropout=0.1)


def test_retraining_ciubm_alone_keeps_din_and_starts_from_it(artifacts, tmp_path):
    data_cfg, data, index = artifacts
    model = ModelConfig(mlp_units=(16,), ciubm_modules=("sa_ta", "simtier", "cold_id"))
    train = TrainConfig(max_epochs=1, seeds=(0,), threads=1)
    out = tmp_path / "ctr"
    run_ctr(CtrConfig(model=model, variants=("din", "ciubm"), train=train), data_cfg, data, out,
            index_dir=index)
    din_weights = (out / "din-seed0.safetensors").read_bytes()
    with np.load(out / "predictions.npz") as p:
        din_test = p["din-seed0/test"]
    again = CtrConfig(model=model, variants=("ciubm",), train=train,
                      ciubm=CiubmTraining(cold_dropout=0.5))
    records = run_ctr(again, data_cfg, data, out, index_dir=index)
    assert set(records) == {"din-seed0", "ciubm-seed0"} and "kept_from" in records["din-seed0"]
    assert (out / "din-seed0.safetensors").read_bytes() == din_weights
    with np.load(out / "predictions.npz") as p:
        np.testing.assert_array_equal(p["din-seed0/test"], din_test)
    spec = json.loads((out / "manifest.json").read_text())["metrics"]["ciubm-seed0"]["spec"]
    assert spec["init_from"] == "din" and spec["cold_dropout"] == 0.5
    assert records["ciubm-seed0"]["epochs"][0]["train_loss"] is None  # DIN judged as the start
