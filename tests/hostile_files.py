"""Hostile pictures made by the tests: a PNG whose header claims a huge size, a big real photo."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def png_with_header(path: Path, width: int, height: int, color_type: int = 2) -> Path:
    """A PNG whose IHDR claims ``width x height`` but whose data is a few bytes (a "decompression bomb"
    header); ``color_type`` 0 grey, 2 RGB, 6 RGBA."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path
