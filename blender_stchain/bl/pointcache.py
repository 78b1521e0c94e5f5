"""PC2 point-cache files (numpy only): the long-clip alternative to one shape key per frame."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_HEADER = "<12siiffi"  # signature, file version, vertex count, start frame, sample rate, frame count


def write_pc2(path, vertices: np.ndarray, start_frame: float = 0.0) -> Path:
    """Write (T, Nv, 3) float32 positions atomically (temporary name, then rename)."""
    path = Path(path)
    v = np.ascontiguousarray(vertices, "<f4")
    T, Nv, _ = v.shape
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack(_HEADER, b"POINTCACHE2\0", 1, Nv, float(start_frame), 1.0, T))
            f.write(v.tobytes())
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
