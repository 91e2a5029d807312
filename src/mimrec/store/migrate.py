"""Converting stores of the Arrow-file format (mimrec before the LanceDB store) in place.

The old format: ``CURRENT.json`` names the current version; ``vNNNNNN.arrow`` (item_id, vector)
and ``vNNNNNN.json`` (its manifest with the encoder info) per version. :func:`migrate` copies the
current version into a new LanceDB table (built under a temporary name, then renamed: a killed
migration leaves the old store as it was), then removes the old files. Earlier versions are not
carried over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from mimrec.errors import MimrecError
from mimrec.store.center import (
    LEGACY_CURRENT,
    StoreInfo,
    _write_all,
    check_ids,
    table_path,
    table_rows,
    writer_lock,
)


def is_legacy(folder: Path) -> bool:
    """Whether ``folder`` holds an Arrow-file store not yet converted."""
    return (folder / LEGACY_CURRENT).is_file() and not table_path(folder).is_dir()


def read_legacy(folder: Path) -> tuple[np.ndarray, np.ndarray, StoreInfo]:
    """The current version of an Arrow-file store: ids, (N, D) vectors and its info."""
    version = json.loads((folder / LEGACY_CURRENT).read_text())["version"]
    name = f"v{version:06d}"
    try:
        manifest = json.loads((folder / f"{name}.json").read_text())
        with pa.memory_map(str(folder / f"{name}.arrow")) as source:
            table = pa.ipc.open_file(source).read_all()
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise MimrecError(f"{folder}: cannot read version {version} of the old store "
                          f"({exc})") from None
    info = StoreInfo(**manifest["info"])
    ids, vectors = table_rows(table, info.dim)
    return ids, vectors.astype(np.float32, copy=False), info


def migrate_store(folder: Path) -> tuple[int, int]:
    """Convert one Arrow-file store; returns (items, new version)."""
    with writer_lock(folder):
        ids, vectors, info = read_legacy(folder)
        check_ids(ids, folder)
        staging = folder / ".migrate-tmp"
        shutil.rmtree(staging, ignore_errors=True)
        version = _write_all(staging, ids, vectors, info)
        table_path(staging).rename(table_path(folder))  # the commit point
        shutil.rmtree(staging, ignore_errors=True)
        (folder / LEGACY_CURRENT).unlink()
        for old in [*folder.glob("v[0-9]*.arrow"), *folder.glob("v[0-9]*.json"),
                    *folder.glob(".v*.tmp-*")]:
            old.unlink()
        return len(ids), version
