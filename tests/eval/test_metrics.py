import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from mimrec.eval.metrics import auc, ctr_metrics, gauc, logloss, rela_impr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_logloss_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2000)
    p = np.clip(rng.random(2000) * 0.6 + y * 0.3, 0.01, 0.99)
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert logloss(y, p) == pytest.approx(log_loss(y, p))


@pytest.mark.parametrize("seed", [0, 1])
def test_gauc_matches_per_user_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, 3000)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.random(3000) + 0.3 * y, 1)  # many ties inside users
    aucs, weights = [], []
    for u in np.unique(users):
        m = users == u
        if 0 < y[m].sum() < m.sum():
            aucs.append(roc_auc_score(y[m], s[m]))
            weights.append(m.sum())
    assert gauc(users, y, s) == pytest.approx(np.average(aucs, weights=weights))


def test_gauc_hand_computed():
    # user 1: pos 0.9 vs negs 0.1 (won), 0.95 (lost) -> AUC 0.5, 3 impressions
    # user 2: pos 0.8 (won), 0.3 (lost) vs neg 0.5 -> AUC 0.5, 3 impressions
    # user 3: positives only -> left out
    users = np.array([1, 1, 1, 2, 2, 2, 3, 3])
    labels = np.array([1, 0, 0, 1, 1, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.95, 0.8, 0.3, 0.5, 0.2, 0.4])
    expected = (3 * 0.5 + 3 * 0.5) / 6
    assert gauc(users, labels, scores) == pytest.approx(expected)
    # make user 2 perfect: AUC 1.0 -> weighted (3*0.5 + 3*1.0) / 6
    scores[4] = 0.7
    assert gauc(users, labels, scores) == pytest.approx((1.5 + 3.0) / 6)


def test_rela_impr():
    assert rela_impr(0.75, 0.70) == pytest.approx(25.0)
    assert rela_impr(0.70, 0.70) == 0.0


def test_ctr_metrics_buckets_count_rows():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 400), rng.random(400)
    buckets = np.repeat([0, 1, 2, 3], 100)
    m = ctr_metrics(rng.integers(0, 10, 400), y, p, buckets)
    assert [m["buckets"][b]["n"] for b in ("cold", "tail", "mid", "head")] == [100] * 4
    assert m["buckets"]["cold"]["auc"] == pytest.approx(roc_auc_score(y[:100], p[:100]))
