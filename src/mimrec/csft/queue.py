"""The "time" negatives of C-SFT: a FIFO queue of key embeddings from earlier steps (MoCo-style)."""

from __future__ import annotations

import torch


class EmbeddingQueue:
    """Detached key embeddings and their item ids from earlier steps, oldest first.

    Pushing appends the newest keys and drops the oldest ones beyond ``size``; a push larger than
    the queue keeps only its newest ``size`` rows. ``size = 0`` is a queue that stays empty.

    Args:
        size: the most keys the queue holds.
        dim: D, the key dimension.

    Shapes: :meth:`push` takes keys (B, D) and ids (B,); ``keys`` is (Q, D), ``ids`` (Q,), Q <= size.
    """

    def __init__(self, size: int, dim: int) -> None:
        if size < 0:
            raise ValueError(f"queue size must be >= 0, got {size}")
        self.size = size
        self.keys = torch.empty((0, dim))
        self.ids = torch.empty((0,), dtype=torch.long)

    def __len__(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Append a step's keys (detached, float32) and their item ids; drop the oldest overflow."""
        if keys.shape[0] != ids.shape[0]:
            raise ValueError(f"queue push: {keys.shape[0]} keys but {ids.shape[0]} ids")
        start = max(0, len(self) + keys.shape[0] - self.size)
        self.keys = torch.cat([self.keys, keys.detach().float()])[start:]  # (Q, D)
        self.ids = torch.cat([self.ids, ids.detach().long()])[start:]  # (Q,)
