"""Fixtures of the C-SFT tests: the encoder tests' tiny towers, and hand-made samples."""

from __future__ import annotations

import numpy as np

from mimrec.data.samples import TRAIN, Samples, compact_histories
from tests.encoders.conftest import (  # noqa: F401  (fixtures are found by name)
    one_thread,
    tiny_image_file,
    tiny_text_dir,
)


def make_samples(user: list[int], item: list[int], timestamp: list[int], label: list[float],
                 split: list[int] | None = None, n_items: int = 10,
                 max_len: int = 5) -> Samples:
    """Samples in the given event order; histories = the user's earlier positives (P1 rule)."""
    n = len(user)
    split_a = np.asarray(split if split is not None else [TRAIN] * n, dtype=np.int8)
    user_a, item_a = np.asarray(user, dtype=np.int64), np.asarray(item, dtype=np.int64)
    time_a, label_a = np.asarray(timestamp, dtype=np.int64), np.asarray(label, dtype=np.float32)
    seq, end, length = compact_histories(user_a, time_a, item_a, label_a > 0, max_len)
    return Samples(split_a, user_a, item_a, time_a, label_a, seq, end, length, max_len,
                   np.zeros(n, dtype=np.int8), np.zeros(n_items, dtype=np.int64),
                   np.zeros(n_items, dtype=bool),
                   np.asarray([str(u) for u in sorted(set(user))]))
