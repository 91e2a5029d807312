"""Locate data files inside installed packages without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mimrec.errors import DataError


def package_file(module: str, relative: str, what: str, install: str) -> Path:
    """``relative`` (a file or folder) inside the installed package ``module``.

    Args:
        module: the package's import name (found with ``find_spec``, never imported).
        relative: path inside the package folder.
        what: what the file is, for the error message ("MovieLens-100K").
        install: the pip command that installs the package.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{what} comes from the {module} package, which is not installed: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise DataError(f"{module} is installed but has no {what} at {path}")
    return path
