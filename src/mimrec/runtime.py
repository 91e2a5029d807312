"""Process-level runtime settings shared by every stage (a leaf module: imports no mimrec code)."""

from __future__ import annotations

import ctypes
import ctypes.util
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


def libc() -> ctypes.CDLL | None:
    """The process's C library, for glibc's memory calls; None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Let a training process reuse the memory its steps free instead of returning it to the
    system. Each step allocates and frees the same large tensors; by default glibc serves large
    blocks with fresh mappings and trims the heap's free top, so every step faults those pages
    in again (about 2,000 page faults a step on the 100M-event benchmark). Here large blocks
    come from the heap (mmap threshold 1 GiB) and the heap keeps up to 2 GiB free (plus 256 MiB
    of padding per growth). Call it before the process reads its data: set after loading it
    changed nothing measurable. Measured with DIN on that benchmark's artifact (400 batches,
    ``benchmarks/bench_scale.py --child train``, alternating): 17,391 and 17,552 samples/s with,
    16,253 and 15,285 without; peak memory 6.12 GiB either way. Best effort: returns False where
    the C library has no ``mallopt`` (not glibc)."""
    c = libc()
    settings = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, (1 << 31) - 1),
                (_M_TOP_PAD, 256 << 20))
    try:
        return c is not None and all(c.mallopt(key, value) == 1 for key, value in settings)
    except (AttributeError, TypeError):  # a C library without mallopt
        return False
