"""Process memory helpers of the service."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys

import pytest

from mimrec.serve.heap import settle_heap


def test_settle_heap_moves_what_was_loaded_out_of_the_collectors_walks():
    loaded = [{"row": i} for i in range(1000)]  # tracked objects a worker holds after loading
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(loaded)
        assert gc.get_count()[0] < 10  # collected first: nothing pending is frozen with it
    finally:
        gc.unfreeze()



REQUESTS = """
import resource
import numpy as np
from mimrec.serve.heap import keep_request_memory
print(keep_request_memory() if {keep} else None)
def request():  # a score request's temporaries: a few blocks of a few MiB alive at once
    blocks = [np.ones(4 << 20, dtype=np.uint8) for _ in range(4)]
    del blocks
request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    request()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _request_faults(keep: bool) -> tuple[str, int]:
    r = subprocess.run([sys.executable, "-c", REQUESTS.format(keep=keep)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    applied, faults = r.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_serving_process_reuses_the_memory_its_requests_free():
    # by default each request's blocks are fresh mappings (or a trimmed heap top), faulted in
    # page by page again (about 2,000 faults a request here); kept, they come from the heap
    # already mapped
    applied, kept = _request_faults(keep=True)
    assert applied == "True"
    default = _request_faults(keep=False)[1]
    assert default > 20 * 1000 and kept < 20 * 10, (default, kept)
