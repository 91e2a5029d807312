"""Process memory helpers of the service."""

from __future__ import annotations

import gc

from mimrec.serve.heap import settle_heap


def test_settle_heap_moves_what_was_loaded_out_of_the_collectors_walks():
    loaded = [{"row": i} for i in range(1000)]  # tracked objects a worker holds after loading
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(loaded)
        assert gc.get_count()[0] < 10  # collected first: nothing pending is frozen with it
    finally:
        gc.unfreeze()
