"""The FIFO queue of "time" negatives."""

from __future__ import annotations

import torch

from mimrec.csft.queue import EmbeddingQueue


def _push(queue: EmbeddingQueue, start: int, n: int) -> None:
    ids = torch.arange(start, start + n)
    queue.push(ids[:, None].float().expand(n, 3), ids)


def test_never_exceeds_its_size_and_drops_oldest_first() -> None:
    queue = EmbeddingQueue(5, 3)
    _push(queue, 0, 3)
    assert queue.ids.tolist() == [0, 1, 2]
    _push(queue, 3, 3)
    assert queue.ids.tolist() == [1, 2, 3, 4, 5] and len(queue) == 5
    _push(queue, 6, 8)  # one push larger than the queue keeps its newest rows
    assert queue.ids.tolist() == [9, 10, 11, 12, 13]
    assert torch.equal(queue.keys[:, 0], queue.ids.float())  # keys stay aligned with ids


def test_pushed_keys_are_detached_and_size_zero_stays_empty() -> None:
    keys = torch.randn(4, 3, requires_grad=True)
    queue = EmbeddingQueue(8, 3)
    queue.push(keys * 2, torch.arange(4))
    assert not queue.keys.requires_grad
    off = EmbeddingQueue(0, 3)
    off.push(keys, torch.arange(4))
    assert len(off) == 0 and off.keys.shape == (0, 3)
