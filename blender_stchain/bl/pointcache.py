"""PC2 point-cache files (numpy only): the long-clip alternative to one shape key per frame."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_CHUNK = 16  # frames per write: a long clip never needs a second copy of all its frames
_HEADER = "<12siiffi"  # signature, file version, vertex count, start frame, sample rate, frame count


def write_pc2(path, vertices: np.ndarray, start_frame: float = 0.0) -> Path:
    """Write (T, Nv, 3) positions as float32 atomically (temporary name, then rename). ``vertices`` is an
    array or anything sliced by frames (a result read from its file): written a chunk at a time."""
    path = Path(path)
    T, Nv, _ = vertices.shape
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack(_HEADER, b"POINTCACHE2\0", 1, Nv, float(start_frame), 1.0, T))
            for a in range(0, T, _CHUNK):
                f.write(np.ascontiguousarray(vertices[a:a + _CHUNK], "<f4").tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_pc2(path) -> np.ndarray:
    """Read a PC2 file back as (T, Nv, 3) float32."""
    raw = Path(path).read_bytes()
    size = struct.calcsize(_HEADER)
    sig, _, nv, _, _, nt = struct.unpack(_HEADER, raw[:size])
    if sig != b"POINTCACHE2\0":
        raise ValueError(f"{path} is not a PC2 file")
    return np.frombuffer(raw, "<f4", count=nt * nv * 3, offset=size).reshape(nt, nv, 3)
