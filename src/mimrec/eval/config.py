"""Config of the evaluation stage."""

from __future__ import annotations

from dataclasses import dataclass

from mimrec.ranges import check_range


@dataclass(frozen=True)
class EvalConfig:
    """What the report contains.

    Args:
        baseline: the model every other one is compared against (RelaImpr).
        plot: write the PNG of AUC per popularity bucket per model.
        bootstrap_resamples: resamples of the paired bootstrap over test users that gives each
            model's AUC / gAUC difference to the baseline a 95% interval; 0 = no intervals.
    """

    baseline: str = "din"
    plot: bool = True
    bootstrap_resamples: int = 1000

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 0:
            raise ValueError(f"eval.bootstrap_resamples must be >= 0, "
                             f"got {self.bootstrap_resamples}")
        check_range("eval.bootstrap_resamples", self.bootstrap_resamples, 0, 1_000_000)
