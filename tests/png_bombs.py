"""PNG files that declare a huge size in a few bytes (decompression bombs), for tests."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int, payload: int = 12_000) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels, followed by ``payload``
    bytes of compressed zero rows: small on disk, huge once decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    row = b"\x00" * (1 + 3 * width)
    stream = zlib.compressobj(9)
    data = b""
    while len(data) < payload:
        data += stream.compress(row * 64)
    data += stream.flush(zlib.Z_SYNC_FLUSH)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data[:payload])
            + _chunk(b"IEND", b""))
