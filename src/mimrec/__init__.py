"""mimrec: multi-modal content interest modelling for CTR prediction (the MIM paradigm).

The Python API is :func:`load_run` (:mod:`mimrec.api`); it is imported on first use, so
``import mimrec`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from mimrec.api import Run

__version__ = "0.1.0"
__all__ = ["__version__", "load_run"]


def load_run(path: str | Path, model: str | None = None) -> Run:
    """Open a finished run folder: ``run.score(history, candidates)``, ``run.encode_items(df)``,
    ``run.store.lookup(ids)``, ``run.report`` (see :class:`mimrec.api.Run`)."""
    from mimrec.api import load_run as _load_run

    return _load_run(path, model)
