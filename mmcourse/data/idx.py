"""The idx format that MNIST ships in: a 4-byte magic number, the dimensions, the raw array.

Magic number: two zero bytes, a type code, the number of dimensions. Then one big-endian
uint32 per dimension, then the values in C order (big-endian for multi-byte types).
Files may be gzip-compressed, as MNIST's are.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, name: str = "idx data") -> np.ndarray:
    """Decode idx bytes into a native-endian array; ``name`` is used in error messages."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in TYPE_CODES:
        raise ValueError(f"{name}: not an idx file (first bytes {data[:4].hex() or 'empty'})")
    dtype, ndim = TYPE_CODES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated header, expected {header} bytes, got {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{name}: expected {expected} bytes for shape {shape} of {dtype}, got {len(data)}"
        )
    x = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return x.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file, gzip-compressed or not (told apart by its first bytes)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from err
    return parse_idx(data, name=str(path))


def to_idx(x: np.ndarray) -> bytes:
    """Encode an array as idx bytes (the inverse of ``parse_idx``)."""
    x = np.asarray(x)
    codes = {(d.kind, d.itemsize): c for c, d in TYPE_CODES.items()}
    code = codes.get((x.dtype.kind, x.dtype.itemsize))
    if code is None:
        raise TypeError(f"expected uint8, int8, int16, int32, float32 or float64, got {x.dtype}")
    dtype = TYPE_CODES[code]
    if x.ndim > 255:
        raise ValueError(f"expected at most 255 dimensions, got {x.ndim}")
    header = bytes([0, 0, code, x.ndim]) + struct.pack(f">{x.ndim}I", *x.shape)
    return header + np.ascontiguousarray(x, dtype=dtype).tobytes()
