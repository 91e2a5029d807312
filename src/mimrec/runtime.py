"""Process-level runtime settings shared by every stage (a leaf module: imports no mimrec code,
and torch only where a function needs it)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import NoReturn


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (0 = leave the setting alone)."""
    import torch  # here: the data stage uses this module without torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def data_threads() -> int:
    """Threads for the data stage's array work (numpy's sorts and gathers and parquet's writer
    release the GIL): the CPUs this process may run on, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def run_threaded(jobs: Iterable[Callable[[], None]], threads: int | None = None) -> None:
    """Run ``jobs`` (made lazily, in order) on ``threads`` threads (default
    :func:`data_threads`), at most two per thread made ahead of the ones running; the first
    error is raised once the started jobs are done."""
    threads = threads or data_threads()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) > 2 * threads:
                pending.popleft().result()
        while pending:
            pending.popleft().result()


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
    return set_malloc(mmap_threshold=1 << 30, trim_threshold=(1 << 31) - 1, top_pad=256 << 20)


def set_malloc(mmap_threshold: int, trim_threshold: int, top_pad: int | None = None) -> bool:
    """glibc's ``mallopt``: blocks of at least ``mmap_threshold`` bytes get their own mapping
    (smaller ones come from the heap), the heap's free top is given back to the system beyond
    ``trim_threshold`` bytes, and each growth of the heap adds ``top_pad`` bytes (None: leave
    it). Setting them turns off glibc's own adjustment of the first two. Returns False where the
    C library has no ``mallopt`` (not glibc) or refuses a value."""
    c = libc()
    settings = [(_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold)]
    if top_pad is not None:
        settings.append((_M_TOP_PAD, top_pad))
    try:
        return c is not None and all(c.mallopt(key, value) == 1 for key, value in settings)
    except (AttributeError, TypeError):  # a C library without mallopt
        return False


def launched_by_torchrun() -> bool:
    """Whether this process is one of several ranks that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def end_process(code: int) -> NoReturn:
    """End the process with ``code``. A rank that torchrun started (``WORLD_SIZE`` > 1) ends
    with ``os._exit`` once its output is flushed, skipping the interpreter's shutdown: torch's
    gloo backend drops its last finished collective on a worker thread after the caller has
    seen it complete, and when that thread needs the GIL for a tensor's Python object while the
    interpreter is shutting down, Python ends the thread inside a C++ destructor and the rank
    aborts ("terminate called without an active exception", SIGABRT) after its work is done,
    so torchrun reports a failure. Seen about once in 10-15 two-rank runs (a gdb backtrace showed
    ``ProcessGroupGloo::runLoop`` destroying an ``AsyncBroadcastWork``); a barrier before
    ``destroy_process_group`` did not prevent it. Every stage closes its files and folders in
    ``with`` blocks before this point; only ``atexit`` handlers are skipped."""
    if launched_by_torchrun():
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    raise SystemExit(code)
