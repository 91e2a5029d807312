"""Process memory helpers of the service: hand freed memory back to the system, read RSS.

A worker's start-up reads the store (Arrow buffers) and builds catalogue-sized tensors, then
frees the intermediates; without a hint the allocators keep those pages, so a worker's resident
memory stays near its start-up peak (about 1.5 GiB more at a million items).
"""

from __future__ import annotations

import gc
from pathlib import Path

from mimrec.runtime import libc, set_malloc


def return_freed_memory() -> None:
    """Hand memory freed after loading back to the system: Arrow's pool keeps the store reads'
    buffers and glibc the freed heap. Best effort: a no-op where there is no glibc."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    c = libc()
    if c is not None and hasattr(c, "malloc_trim"):  # glibc only
        c.malloc_trim(0)


def settle_heap() -> None:
    """Once a serving process has loaded: collect, then move every object it holds into the
    garbage collector's permanent generation (``gc.freeze``). Python's full collections walk
    every tracked object; a worker holds about half a million after loading (the libraries,
    the model, the catalogue), and one such walk took 0.28 s at a million items, on the event
    loop, inside whatever request triggered it. Frozen objects are never walked again; what
    requests and item adds create afterwards is collected as usual."""
    gc.collect()
    gc.freeze()


def keep_request_memory() -> bool:
    """Let a serving process reuse the memory its requests free. A score request allocates and
    frees the same few blocks of a few MiB (candidates x history x dimension); by default glibc
    gives blocks over 128 KiB their own mapping and trims the heap's free top beyond 128 KiB, so
    every request faulted those pages in again: about 1,100 page faults and 4.9 ms of CPU a
    score on the demo bundle, 2.1-2.9 ms and no page fault with blocks up to 32 MiB from the
    heap and up to 64 MiB kept free at its top (the same resident memory after loading). Call
    it once the process has loaded (:func:`settle_heap`): loading's large temporaries keep
    their own mappings and go back to the system. Best effort: False where it cannot be set."""
    return set_malloc(mmap_threshold=32 << 20, trim_threshold=64 << 20)


def rss_mib(pid: int | str = "self") -> tuple[float, float] | None:
    """(resident, peak resident) memory of a process in MiB from ``/proc/PID/status``
    (``VmRSS``, ``VmHWM``); None where there is no such file (not Linux, process gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    if len(values) < 2:
        return None
    return values["VmRSS"], values["VmHWM"]
