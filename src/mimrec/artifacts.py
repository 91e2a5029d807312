"""Stage artifact folders: each stage writes its files plus a ``manifest.json`` holding the resolved
config, the parent artifacts it read (with content hashes), the package version and its metrics.

Writes are atomic: a stage fills ``<folder>.tmp-<pid>`` and renames it into place when done, so an
interrupted stage never leaves a half-written artifact behind the name of a finished one; the
temporary folders of killed runs are removed when the stage next runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mimrec
from mimrec.errors import MimrecError
from mimrec.processes import remove_stale_temps

MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    """Hex sha256 of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(folder: Path) -> str:
    """sha256 over the names and contents of every file in an artifact folder except its manifest."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        h.update(str(path.relative_to(folder)).encode())
        h.update(file_sha256(path).encode())
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


@contextmanager
def stage_dir(folder: Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces ``folder`` in one rename."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder.parent, f".{folder.name}.*-*")  # left by killed runs
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_manifest(
    folder: Path, stage: str, config: dict[str, Any], parents: dict[str, Path] | None = None,
    metrics: dict[str, Any] | None = None, inputs: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Write ``manifest.json`` for a filled artifact folder and return it."""
    manifest = {
        "stage": stage,
        "mimrec_version": mimrec.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "parents": {name: {"path": str(Path(p).resolve()), "hash": read_manifest(p)["hash"]}
                    for name, p in (parents or {}).items()},
        "inputs": {str(p): file_sha256(p) for p in inputs},
        "metrics": metrics or {},
        "hash": content_hash(folder),
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a finished artifact; a clear error when the folder is not one."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MimrecError(f"{folder} is not a finished mimrec artifact (no {MANIFEST}); "
                          "run the stage that makes it first")
    return json.loads(path.read_text())


def require_stage(folder: Path, stage: str) -> dict[str, Any]:
    """Read the manifest and check that the folder was written by ``stage``."""
    manifest = read_manifest(folder)
    if manifest.get("stage") != stage:
        raise MimrecError(f"{folder} is a {manifest.get('stage')!r} artifact, expected {stage!r}")
    return manifest
