"""What item content can say about a cold item: the content ceiling of the cold bucket.

A cold item has no trained ID embedding, so beyond the user, a CTR model knows about it only what its
content predicts. This module measures that directly, with no CTR model: a ridge regression of the
warm items' train click rates on their content vectors (or on their categorical features), then the
AUC of that predicted rate on the test rows of the cold bucket. Beside it, the AUC of the user's own
train click rate on the same rows (what the user side alone separates), and of the items' test click
rate (an oracle: it reads the test labels; the ceiling for any item-side score).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from mimrec.data.samples import TEST, TRAIN, Samples
from mimrec.eval.metrics import auc


def train_rates(index: np.ndarray, label: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row smoothed click rate ``(clicks + 1) / (impressions + 2)`` and impression counts."""
    count = np.bincount(index, minlength=size)
    clicks = np.bincount(index, weights=label, minlength=size)
    return (clicks + 1) / (count + 2), count


def predicted_rates(features: np.ndarray, rate: np.ndarray, count: np.ndarray,
                    alpha: float = 1.0) -> np.ndarray:
    """Every item's click rate predicted from its features by a ridge regression fitted on the
    items with train impressions (their train ``rate``, weighted by the square root of their
    ``count``; see :func:`train_rates`).

    Shapes: ``features`` (I, F), ``rate``, ``count`` (I,) -> (I,).
    """
    warm = count > 0
    if not warm.any():
        raise ValueError("no item has a train impression: nothing to fit the item rates on")
    model = Ridge(alpha=alpha).fit(features[warm], rate[warm], sample_weight=np.sqrt(count[warm]))
    return model.predict(features)


def cold_ceiling(samples: Samples, item_features: dict[str, np.ndarray]) -> dict[str, float]:
    """AUC on the test rows of the cold bucket of: the user's train click rate; each named item
    feature matrix's predicted item rate (:func:`predicted_rates`); the oracle item test rate.

    ``item_features`` maps a name to an (I, F) matrix by catalogue row. Raises ValueError when
    the test split has no cold rows of both labels.
    """
    test = samples.split == TEST
    code = samples.buckets.index("cold") if "cold" in samples.buckets else -1  # may be merged
    cold = test & (samples.bucket == code)
    labels = samples.label[cold]
    if len(np.unique(labels)) < 2:
        raise ValueError(f"the cold bucket of test has {int(cold.sum())} rows, not both labels: "
                         "run P1-cold (data.new_item_fraction > 0)")
    train = samples.split == TRAIN
    n_items = len(samples.item_train_count)
    user_rate, _ = train_rates(samples.user[train], samples.label[train], len(samples.user_ids))
    item_rate, item_count = train_rates(samples.item[train], samples.label[train], n_items)
    result = {"cold_rows": float(cold.sum()),
              "user train rate": auc(labels, user_rate[samples.user[cold]])}
    for name, features in item_features.items():
        predicted = predicted_rates(features, item_rate, item_count)
        result[name] = auc(labels, predicted[samples.item[cold]])
    oracle, _ = train_rates(samples.item[test], samples.label[test], n_items)
    result["oracle: item test rate"] = auc(labels, oracle[samples.item[cold]])
    return result


def multi_hot(index: np.ndarray) -> np.ndarray:
    """An (rows + 1, M) bag index matrix (row 0 padding, 0 = no value) -> (rows, V) 0/1."""
    index = index[1:]
    out = np.zeros((len(index), int(index.max()) + 1))
    np.put_along_axis(out, index, 1.0, axis=1)
    return out[:, 1:]
