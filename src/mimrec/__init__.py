"""mimrec: multi-modal content interest modelling for CTR prediction (the MIM paradigm).

The Python API is ``mimrec.load_run(path)`` (:func:`mimrec.api.load_run`: a finished run's
``score``, ``encode_items``, ``store``, ``report``). It is imported on first use, so ``import
mimrec`` stays light and the package root imports no layer (the import contracts hold).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_run"]


def __getattr__(name: str) -> Any:
    if name == "load_run":
        return importlib.import_module("mimrec.api").load_run
    raise AttributeError(f"module 'mimrec' has no attribute {name!r}")
