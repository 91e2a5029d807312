"""Process-level runtime settings (mimrec.runtime)."""

import platform
import subprocess
import sys

import pytest

STEPS = """
import resource, torch
from mimrec.runtime import keep_freed_memory
print(keep_freed_memory() if {keep} else None)
faults = 0
for mb in (4, 16, 48, 64, 200):  # a step's large temporaries: allocated, written, freed
    x = torch.ones(mb << 20, dtype=torch.uint8); del x  # the first step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):  # later steps
        x = torch.ones(mb << 20, dtype=torch.uint8); del x
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
"""


def _page_faults(keep: bool, script: str = STEPS) -> tuple[str, int]:
    """Run ``script`` (with or without the setting) in a fresh process: (set?, page faults)."""
    r = subprocess.run([sys.executable, "-c", script.format(keep=keep)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    applied, faults = r.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_training_process_reuses_the_memory_its_steps_free():
    # by default most of these temporaries are fresh mappings, faulted in page by page each
    # time (about 420,000 faults here); kept, most are reused already mapped (about 60,000)
    applied, kept = _page_faults(keep=True)
    assert applied == "True"
    assert kept * 3 < _page_faults(keep=False)[1]


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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_serving_process_reuses_the_memory_its_requests_free():
    # by default each request's blocks are fresh mappings (or a trimmed heap top), faulted in
    # page by page again (about 2,000 faults a request here); kept, they come from the heap
    # already mapped
    applied, kept = _page_faults(True, REQUESTS)
    assert applied == "True"
    default = _page_faults(False, REQUESTS)[1]
    assert default > 20 * 1000 and kept < 20 * 10, (default, kept)


def test_run_threaded_runs_every_job_made_lazily_and_raises_the_first_error():
    import threading

    from mimrec.runtime import data_threads, run_threaded

    assert 1 <= data_threads() <= 8
    done, made, ahead, lock = [], [], [], threading.Lock()

    def job(k):
        with lock:
            done.append(k)
            ahead.append(len(made) - k)  # jobs made beyond this one when it runs

    def jobs(n):
        for k in range(n):
            made.append(k)
            yield lambda k=k: job(k)
    run_threaded(jobs(50), threads=2)
    assert sorted(done) == list(range(50)) and made == list(range(50))
    assert max(ahead) <= 2 * 2 + 1  # made lazily: a bounded queue, not the whole list at once

    def failing():
        raise ValueError("job 3 broke")
    with pytest.raises(ValueError, match="job 3 broke"):
        run_threaded([lambda: None, failing, lambda: None], threads=2)


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_end_process_skips_the_interpreter_shutdown_only_in_a_torchrun_rank(world_size):
    import os

    code = ("import atexit; from mimrec.runtime import end_process; "
            "atexit.register(print, 'at exit'); print('done', end=''); end_process(3)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       env={**os.environ, "WORLD_SIZE": world_size})
    assert r.returncode == 3
    assert r.stdout == ("done" if world_size == "2" else "doneat exit\n")  # output flushed
