"""Process-level runtime settings shared by every stage (a leaf module: imports no mimrec code)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (0 = leave the setting alone)."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
