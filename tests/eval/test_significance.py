import numpy as np
import pytest

from mimrec.eval.metrics import auc, gauc
from mimrec.eval.report import difference_table
from mimrec.eval.significance import WeightedAuc, paired_bootstrap


def _data(seed=0, n=3000, users=120):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    label = (rng.random(n) < 0.5).astype(float)
    return rng, user, label


def test_weighted_auc_equals_auc_of_the_repeated_rows_with_ties():
    rng, _, label = _data()
    scores = np.round(label * 0.3 + rng.random(len(label)), 1)  # many ties
    weights = rng.integers(0, 3, len(label))
    repeated = np.repeat(np.arange(len(label)), weights)
    assert WeightedAuc(label, scores)(weights) == pytest.approx(
        auc(label[repeated], scores[repeated]))
    assert WeightedAuc(label, scores)(np.ones(len(label))) == pytest.approx(auc(label, scores))


def test_a_real_lead_has_an_interval_above_zero_and_a_tie_one_around_it():
    rng, user, label = _data()
    base = {s: label * 0.2 + rng.random(len(label)) for s in (0, 1)}
    better = {s: label * 0.6 + rng.random(len(label)) for s in (0, 1)}
    same = {s: label * 0.2 + rng.random(len(label)) for s in (0, 1)}
    lead = paired_bootstrap(user, label, better, base, resamples=200)
    expected = np.mean([auc(label, better[s]) - auc(label, base[s]) for s in (0, 1)])
    assert lead["delta_auc"] == pytest.approx(expected)
    assert lead["delta_gauc"] == pytest.approx(
        np.mean([gauc(user, label, better[s]) - gauc(user, label, base[s]) for s in (0, 1)]))
    assert lead["delta_auc_interval"][0] > 0 and lead["delta_gauc_interval"][0] > 0
    tie = paired_bootstrap(user, label, same, base, resamples=200)
    assert tie["delta_auc_interval"][0] < 0 < tie["delta_auc_interval"][1]
    itself = paired_bootstrap(user, label, base, base, resamples=50)
    assert itself["delta_auc_interval"] == [0.0, 0.0]


def test_only_shared_seeds_are_paired_and_bad_input_is_refused():
    rng, user, label = _data()
    probs = rng.random(len(label))
    result = paired_bootstrap(user, label, {0: probs, 2: probs}, {0: probs, 1: probs}, 20)
    assert result["seeds"] == [0]
    assert paired_bootstrap(user, label, {2: probs}, {1: probs}, 20) is None
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        paired_bootstrap(user, label, {0: probs}, {0: probs}, 0)


def test_the_report_table_shows_each_difference_with_its_interval():
    vs = {"delta_auc": 0.0011, "delta_auc_interval": [-0.006, 0.007], "delta_gauc": 0.0,
          "delta_gauc_interval": [-0.005, 0.0055], "resamples": 1000, "seeds": [0], "level": 0.95}
    report = {"baseline": "din", "models": {"din": {}, "ciubm": {"vs_baseline": vs}}}
    text = "\n".join(difference_table(report))
    assert "| ciubm | +0.0011 [-0.0060, +0.0070] | +0.0000 [-0.0050, +0.0055] |" in text
    assert "95% interval" in text and "1000 resamples" in text
    assert difference_table({"baseline": "din", "models": {"din": {}}}) == []
