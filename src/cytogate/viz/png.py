"""PNG encoding of rendered figures: one fixed row filter and fast zlib, about 3x Pillow's speed.

Pillow chooses a PNG filter per row by trying all five (the adaptive heuristic of libpng),
which took two thirds of the time of writing a figure even at zlib level 1, and it offers no
way to choose a filter. A figure is mostly flat colour, so the "up" filter on every row
compresses as well (within a few per cent) at a third of the time. The file is a plain
8-bit RGB PNG (IHDR, pHYs with the resolution, one IDAT, IEND) that every reader opens; the
bytes depend only on the pixels and the resolution, so output stays deterministic.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2
#: zlib level 1: ~5x faster than the default 6 on figures, ~15 % larger files.
COMPRESS_LEVEL = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(rgb: np.ndarray, dpi: float | None = None, level: int = COMPRESS_LEVEL) -> bytes:
    """The PNG file of an (height × width × 3) uint8 RGB array, with ``dpi`` in pHYs."""
    pixels = np.asarray(rgb)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"encode_png needs an (h, w, 3) uint8 array, not {pixels.shape}")
    height, width, _ = pixels.shape
    rows = pixels.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = _FILTER_UP
    filtered[0, 1:] = rows[0]  # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines it
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    parts = [_SIGNATURE, _chunk(b"IHDR", header)]
    if dpi:
        per_metre = round(dpi / 0.0254)
        parts.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    parts.append(_chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)
