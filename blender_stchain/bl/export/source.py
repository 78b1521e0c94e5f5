"""A result file opened for export without loading its frames (numpy only, no bpy).

The small tensors (faces, K, cameras, frame numbers) are read at once; the per-frame vertices stay in
the file and are read a chunk at a time with plain reads (a memory map's touched pages would count
in the exporting process's resident memory), so a 1,000-frame result costs one chunk of memory
while the point cache is written. A per-frame rigid transform (a presentation change) is applied on
read. ``ResultView`` has the attributes the scene writer reads from a ``Result``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...contracts.errors import StchainError, WeightsError
from ...contracts.result import _DTYPES, _ST_DTYPES, SCHEMA_VERSION, check_faces, validate_shapes
from ...contracts.safetensors_io import read_header

CHUNK_FRAMES = 16
_SMALL = ("faces", "frame_numbers", "K", "world_to_camera", "image_size")


class FrameReader:
    """(T, N, ...) frames of one tensor of a result file, read on demand; ``transforms`` (T, 4, 4)
    map each frame's points (last axis 3) before they are returned."""

    def __init__(self, path: Path, offset: int, shape: tuple, dtype, transforms: np.ndarray | None = None):
        self.path, self.offset, self.shape, self.dtype = path, offset, tuple(shape), np.dtype(dtype)
        self.frame_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.transforms = transforms

    def __len__(self) -> int:
        return self.shape[0]

    def with_transforms(self, transforms: np.ndarray) -> "FrameReader":
        return FrameReader(self.path, self.offset, self.shape, self.dtype, np.asarray(transforms, np.float64))

    def __getitem__(self, key):
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step != 1:
                raise IndexError("result frames are read in contiguous ranges")
            return self.read(a, max(a, b))
        i = int(key) + (len(self) if int(key) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {key} of {len(self)}")
        return self.read(i, i + 1)[0]

    def __iter__(self):
        for a in range(0, len(self), CHUNK_FRAMES):
            yield from self.read(a, min(a + CHUNK_FRAMES, len(self)))

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, *self.shape[1:]), self.dtype)
        with open(self.path, "rb") as f:
            f.seek(self.offset + a * self.frame_bytes)
            if out.size and f.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise StchainError(f"{self.path} is shorter than its header says (truncated result)")
        if self.transforms is not None:
            M = self.transforms[a:b]
            out = (np.einsum("tij,tnj->tni", M[:, :3, :3], out) + M[:, None, :3, 3]).astype(self.dtype)
        return out


@dataclass
class ResultView:
    """What the scene writer reads from a result, with ``vertices`` (and ``confidence``) left in the file."""

    path: Path
    faces: np.ndarray
    vertices: FrameReader
    confidence: FrameReader
    frame_numbers: np.ndarray
    K: np.ndarray
    world_to_camera: np.ndarray
    image_size: np.ndarray
    metadata: dict = field(default_factory=dict)
    tracks_2d: None = None  # 2D tracks belong to the footage, not to an exported file
    track_visible: None = None

    @property
    def num_frames(self) -> int:
        return len(self.vertices)

    @property
    def presentation(self) -> str:
        """``object_moves`` or ``camera_moves``: how the pipeline wrote this result."""
        return str(self.metadata.get("settings", {}).get("camera_mode", "object_moves"))

    @property
    def fps(self) -> float | None:
        from fractions import Fraction

        fps = self.metadata.get("footage", {}).get("fps")
        return float(Fraction(fps)) if fps else None


def open_result(path) -> ResultView:
    """Open a result file for export; anything that is not one of our results is one clear error."""
    path = Path(path).expanduser()
    try:
        header = read_header(path)
    except WeightsError as e:
        why = str(e).split("(", 1)[-1].split(")", 1)[0] if "(" in str(e) else "unreadable"
        raise StchainError(f"{path} is not a blender_stchain result ({why})") from None
    try:
        meta = json.loads(header.metadata.get("stchain", "null"))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise StchainError(f"{path} is not a blender_stchain result (no result metadata in its header)")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise StchainError(f"{path} has result schema {meta.get('schema_version')}, this version reads "
                           f"{SCHEMA_VERSION}: export it with the version that made it")
    infos = header.tensors
    try:
        validate_shapes({k: v.shape for k, v in infos.items()})
        wrong = [k for k in (*_SMALL, "vertices", "confidence") if infos[k].dtype != _ST_DTYPES[np.dtype(_DTYPES[k])]]
        if wrong:
            raise ValueError(f"tensor {wrong[0]} has dtype {infos[wrong[0]].dtype}")
    except ValueError as e:
        raise StchainError(f"{path} is not a blender_stchain result ({e})") from None
    small = {}
    with open(path, "rb") as f:
        for name in _SMALL:
            f.seek(header.data_start + infos[name].begin)
            small[name] = np.fromfile(f, _DTYPES[name], int(np.prod(infos[name].shape))).reshape(infos[name].shape)
    check_faces(small["faces"], infos["vertices"].shape[1])

    def frames(name):
        return FrameReader(path, header.data_start + infos[name].begin, infos[name].shape, _DTYPES[name])

    return ResultView(path=path, vertices=frames("vertices"), confidence=frames("confidence"), metadata=meta,
                      **small)
