"""Config of the evaluation stage."""

from __future__ import annotations

from dataclasses import dataclass

from mimrec.ranges import check_range

CHUNK_ROWS = 1_000_000  # rows the streaming metrics (mimrec.eval.streaming) take at a time
STREAM_ABOVE_ROWS = 2_000_000  # splits of more rows are streamed (predictions on disk)


@dataclass(frozen=True)
class EvalConfig:
    """What the report contains.

    Args:
        baseline: the model every other one is compared against (RelaImpr).
        plot: write the PNG of AUC per popularity bucket per model.
        bootstrap_resamples: resamples of the paired bootstrap over test users that gives each
            model's AUC / gAUC difference to the baseline a 95% interval; 0 = no intervals.
        stream_above_rows: a split with more rows is scored by the streaming metrics
            (:mod:`mimrec.eval.streaming`: exact, read ``chunk_rows`` rows at a time from the
            memory-mapped predictions); up to it, in memory as before.
        chunk_rows: rows the streaming metrics read at a time (their memory is a few hundred
            bytes a chunk row, not a split row).
        bootstrap_rows: a split with more rows is bootstrapped on a random sample of its users
            holding at most this many rows (the report says so); the point metrics still use
            every row.
    """

    baseline: str = "din"
    plot: bool = True
    bootstrap_resamples: int = 1000
    stream_above_rows: int = STREAM_ABOVE_ROWS
    chunk_rows: int = CHUNK_ROWS
    bootstrap_rows: int = 2_000_000

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 0:
            raise ValueError(f"eval.bootstrap_resamples must be >= 0, "
                             f"got {self.bootstrap_resamples}")
        check_range("eval.bootstrap_resamples", self.bootstrap_resamples, 0, 1_000_000)
        check_range("eval.stream_above_rows", self.stream_above_rows, 0)
        check_range("eval.chunk_rows", self.chunk_rows, 1)
        check_range("eval.bootstrap_rows", self.bootstrap_rows, 1)
