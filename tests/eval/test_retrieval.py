"""Protocol P2 on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from mimrec.data.samples import TEST, TRAIN, VALID
from mimrec.eval.retrieval import p2_metrics, p2_queries
from tests.csft.conftest import make_samples

VECTORS = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])


def _samples():
    # user 0: 0+ (train) -> valid 2+ ; valid 3- (not positive)
    # user 1: 2+ (train) -> valid 1+
    # user 2: valid 3+ with no history (skipped)
    # user 3: 3+ (train) -> valid 3+ (target = query: skipped)
    # user 4: 1+ (train) -> valid 0+ ; test 2+ (other split)
    return make_samples(
        user=[0, 1, 3, 4, 0, 1, 2, 0, 3, 4, 4],
        item=[0, 2, 3, 1, 2, 1, 3, 3, 3, 0, 2],
        timestamp=[1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8],
        label=[1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1],
        split=[TRAIN] * 4 + [VALID] * 6 + [TEST], n_items=4)


def test_queries_are_the_last_positive_before_each_valid_positive() -> None:
    query, target = p2_queries(_samples())
    assert query.tolist() == [0, 2, 1] and target.tolist() == [2, 1, 0]


def test_recall_and_mrr_by_hand() -> None:
    # ranks (query excluded): item 2 from 0 -> 1 (item 1 closer); item 1 from 2 -> 0; item 0 from 1 -> 0
    m = p2_metrics(VECTORS, _samples(), ks=(1, 2))
    assert m["recall@1"] == pytest.approx(2 / 3) and m["recall@2"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert p2_metrics(VECTORS * 7.0, _samples(), ks=(1, 2)) == m  # cosine: scale-free


def test_ties_count_against_the_target_and_no_query_gives_nan() -> None:
    m = p2_metrics(np.ones((4, 2)), _samples(), ks=(1, 2))
    assert m["recall@1"] == 0.0 and m["recall@2"] == 0.0  # 2 tied others rank above
    assert p2_metrics(VECTORS, _samples(), split=TEST, ks=(1, 2))["recall@2"] == 1.0  # 0 -> 2
    empty = p2_metrics(VECTORS, make_samples([0], [0], [1], [1.0], n_items=4), ks=(1,))
    assert np.isnan(empty["recall@1"]) and np.isnan(empty["mrr"])
