"""Config of the evaluation stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalConfig:
    """What the report contains.

    Args:
        baseline: the model every other one is compared against (RelaImpr).
        plot: write the PNG of AUC per popularity bucket per model.
    """

    baseline: str = "din"
    plot: bool = True
