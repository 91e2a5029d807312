"""Arrays of an uncompressed ``.npz`` (what ``np.savez`` writes) as read-only memory maps, so a
split's saved predictions are read a chunk at a time, never loaded whole.

``np.load`` ignores ``mmap_mode`` for ``.npz`` files. ``np.savez`` stores each member as a plain
``.npy`` file inside the zip without compression, so its bytes lie contiguous in the archive:
the member's local zip header gives where its ``.npy`` header starts, and that header gives the
dtype, shape and where the data starts.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

LOCAL_HEADER = 30  # bytes of a zip local file header before its name and extra field


def npz_memmaps(path: Path) -> dict[str, np.ndarray]:
    """Every ``<key>.npy`` member of the ``.npz`` at ``path`` by key, as a read-only memory map
    (an empty member as an empty array). A compressed member (``np.savez_compressed``) is read
    into memory instead; object arrays are refused (no unpickling)."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            f.seek(info.header_offset + LOCAL_HEADER + name_len + extra_len)
            out[key] = _npy_memmap(f, path)
    return out


def _npy_memmap(f, path: Path) -> np.ndarray:
    """The ``.npy`` array whose header starts at ``f``'s position, memory-mapped from ``path``."""
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError(f"{path}: holds an object array (refused: it would need unpickling)")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype, "r", f.tell(), shape, order="F" if fortran else "C")
