"""Fixtures of the C-SFT tests: the encoder tests' tiny towers, and hand-made samples."""

from __future__ import annotations

import numpy as np

from mimrec.data.samples import TRAIN, Samples
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
    history = np.full((n, max_len), -1, dtype=np.int64)
    for i in range(n):
        before = [item[j] for j in range(n) if user[j] == user[i] and label[j] > 0
                  and timestamp[j] < timestamp[i]][-max_len:]
        if before:
            history[i, -len(before):] = before
    return Samples(split_a, np.asarray(user, dtype=np.int64), np.asarray(item, dtype=np.int64),
                   np.asarray(timestamp, dtype=np.int64), np.asarray(label, dtype=np.float32),
                   history, np.zeros(n, dtype=np.int8), np.zeros(n_items, dtype=np.int64),
                   np.zeros(n_items, dtype=bool),
                   np.asarray([str(u) for u in sorted(set(user))]))
