"""The result contract (docs/architecture.md 3): ``result.safetensors`` plus JSON metadata in its header.

``ResultWriter`` streams per-window tensors to spool files and assembles the final file at the
end, so memory stays flat in clip length. The final file is written to a temporary name and
renamed into place: a crash, a cancel or a full disk never leaves a partial result behind.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1

STATIC = ("faces", "K", "image_size")
_ST_DTYPES = {
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}
_REQUIRED = ("faces", "vertices", "confidence", "frame_numbers", "K", "world_to_camera", "image_size")
_DTYPES = {
    "faces": np.int32,
    "vertices": np.float32,
    "confidence": np.float32,
    "frame_numbers": np.int32,
    "K": np.float32,
    "world_to_camera": np.float32,
    "image_size": np.int32,
    "tracks_2d": np.float32,
    "track_visible": np.uint8,
    "track_vertex_ids": np.int32,
}


@dataclass
class Result:
    """A 4D mesh with fixed topology plus its camera, in the backbone's object space."""

    faces: np.ndarray  # (F, 3) int32
    vertices: np.ndarray  # (T, Nv, 3) float32
    confidence: np.ndarray  # (T, Nv) float32
    frame_numbers: np.ndarray  # (T,) int32, 1-based footage frame numbers
    K: np.ndarray  # (3, 3) float32, footage pixels
    world_to_camera: np.ndarray  # (T, 4, 4) float32, OpenCV convention
    image_size: np.ndarray  # (2,) int32, (W, H) footage pixels
    tracks_2d: np.ndarray | None = None  # (T, L, 2) float32
    track_visible: np.ndarray | None = None  # (T, L) uint8
    track_vertex_ids: np.ndarray | None = None  # (L,) int32, the vertex each track follows
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, dtype in _DTYPES.items():
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.ascontiguousarray(value, dtype=dtype))
        validate_shapes({k: v.shape for k, v in self.tensors().items()})
        check_faces(self.faces, self.vertices.shape[1])

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    def tensors(self) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name) for name in _DTYPES}
        return {k: v for k, v in out.items() if v is not None}

    def save(self, path: str | os.PathLike) -> Path:
        writer = ResultWriter(path)
        tensors = self.tensors()
        writer.add_frames(**{k: v for k, v in tensors.items() if k not in STATIC})
        return writer.finish(self.metadata, **{k: tensors[k] for k in STATIC})


def validate_shapes(t: dict[str, tuple]) -> None:
    """Raise ValueError when the tensor shapes do not form a consistent result."""
    missing = [n for n in _REQUIRED if n not in t]
    if missing:
        raise ValueError(f"result is missing {', '.join(missing)}")
    T, Nv = t["vertices"][:2]
    expect = {
        "faces": (None, 3),
        "vertices": (T, Nv, 3),
        "confidence": (T, Nv),
        "frame_numbers": (T,),
        "K": (3, 3),
        "world_to_camera": (T, 4, 4),
        "image_size": (2,),
    }
    if "tracks_2d" in t:
        L = t["tracks_2d"][1]
        expect["tracks_2d"] = (T, L, 2)
        expect["track_visible"] = (T, L)
        if "track_vertex_ids" in t:
            expect["track_vertex_ids"] = (L,)
    for name, shape in expect.items():
        got = t.get(name)
        if got is None:
            raise ValueError(f"result has tracks_2d without {name}")
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise ValueError(f"result tensor {name} has shape {tuple(got)}, expected {shape}")


def check_faces(faces: np.ndarray, num_vertices: int) -> None:
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ValueError("result faces index vertices that do not exist")


_ACTIVE: set = set()  # writers of this process that have not finished (see ``abort_all``)


def abort_all() -> None:
    """Drop every unfinished writer's files (the worker's last act when a cancel cannot wait)."""
    for writer in list(_ACTIVE):
        writer.abort()


class ResultWriter:
    """Streams frames to spool files; ``finish`` writes the safetensors file atomically."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_spools(self.path.parent)
        self._spool = Path(tempfile.mkdtemp(prefix=f".stchain-spool-{os.getpid()}-", dir=self.path.parent))
        self._frames = 0
        self._tail: dict[str, tuple] = {}
        self._files: dict[str, object] = {}
        self._tmp: Path | None = None
        _ACTIVE.add(self)

    @property
    def frames_written(self) -> int:
        return self._frames

    def spooled(self, name: str) -> "SpooledFrames":
        """A streamed tensor for a second pass, read frame by frame (``len``, ``[i]``, ``[a:b]``)."""
        self._files[name].flush()
        return SpooledFrames(self._spool / f"{name}.bin", _DTYPES[name], self._tail[name], self._frames)

    def add_frames(self, **per_frame: np.ndarray) -> None:
        """Append frames: vertices, confidence, frame_numbers, world_to_camera, tracks (optional)."""
        n = None
        for name, value in per_frame.items():
            if name not in _DTYPES:
                raise ValueError(f"unknown per-frame tensor {name}")
            arr = np.ascontiguousarray(value, _DTYPES[name])
            if n is None:
                n = arr.shape[0]
            if arr.shape[0] != n:
                raise ValueError("per-frame tensors of one call must have the same frame count")
            tail = self._tail.setdefault(name, arr.shape[1:])
            if tail != arr.shape[1:]:
                raise ValueError(f"{name} changed shape from {tail} to {arr.shape[1:]}")
            if name not in self._files:
                if self._frames:
                    raise ValueError(f"{name} appeared after frames were written without it")
                self._files[name] = open(self._spool / f"{name}.bin", "wb")
            self._files[name].write(arr.tobytes())
        if set(self._files) != set(per_frame):
            raise ValueError("every call must carry the same per-frame tensors")
        self._frames += n or 0

    def transform(self, name: str, fn, chunk: int = 64) -> None:
        """Rewrite a streamed tensor in place, ``chunk`` frames at a time: ``fn(start, stop, block)``."""
        data = self.spooled(name)
        with open(data.path, "r+b") as f:
            for a in range(0, self._frames, chunk):
                b = min(a + chunk, self._frames)
                block = np.ascontiguousarray(fn(a, b, data.read_from(f, a, b)), _DTYPES[name])
                if block.shape != (b - a, *data.tail):
                    raise ValueError(f"transform of {name} returned shape {block.shape}")
                f.seek(a * data.frame_bytes)
                f.write(block.tobytes())

    def finish(self, metadata: dict | None = None, **whole: np.ndarray) -> Path:
        """Write the file: streamed tensors plus ``whole`` ones (faces, K, image_size, ...)."""
        for f in self._files.values():
            f.close()
        try:
            whole = {k: np.ascontiguousarray(v, _DTYPES[k]) for k, v in whole.items()}
            overlap = set(whole) & set(self._files)
            if overlap:
                raise ValueError(f"{', '.join(overlap)} given both streamed and whole")
            header, order = self._header(metadata or {}, whole)
            tmp = self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            try:
                with open(tmp, "wb") as out:
                    out.write(struct.pack("<Q", len(header)))
                    out.write(header)
                    for name in order:
                        if name in whole:
                            out.write(whole[name].tobytes())
                        else:
                            with open(self._spool / f"{name}.bin", "rb") as src:
                                shutil.copyfileobj(src, out, 1 << 22)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
                self._tmp = None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Drop everything written so far (cancel or failure); the finished file, if any, stays."""
        _ACTIVE.discard(self)
        for f in self._files.values():
            f.close()
        shutil.rmtree(self._spool, ignore_errors=True)
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def _header(self, metadata: dict, whole: dict) -> tuple[bytes, list[str]]:
        shapes = {name: (self._frames, *tail) for name, tail in self._tail.items()}
        shapes.update({name: arr.shape for name, arr in whole.items()})
        validate_shapes(shapes)
        check_faces(whole["faces"], shapes["vertices"][1])
        order = sorted(shapes)
        entries, offset = {}, 0
        for name in order:
            nbytes = int(np.prod(shapes[name])) * np.dtype(_DTYPES[name]).itemsize
            entries[name] = {
                "dtype": _ST_DTYPES[np.dtype(_DTYPES[name])],
                "shape": list(map(int, shapes[name])),
                "data_offsets": [offset, offset + nbytes],
            }
            offset += nbytes
        meta = {"schema_version": SCHEMA_VERSION, **metadata}
        entries["__metadata__"] = {"stchain": json.dumps(meta, sort_keys=True, default=json_default)}
        raw = json.dumps(entries, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        return raw, order


class SpooledFrames:
    """Frames of a spool file read on demand with plain reads, not a memory map: mapped pages of a
    long clip would count in the worker's resident memory (240 MB for 1,000 frames of 20k vertices)."""

    def __init__(self, path: Path, dtype, tail: tuple, frames: int):
        self.path, self.dtype, self.tail, self.frames = path, np.dtype(dtype), tuple(tail), frames
        self.frame_bytes = int(np.prod(self.tail, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, key):
        if isinstance(key, slice):
            a, b, step = key.indices(self.frames)
            if step != 1:
                raise IndexError("spooled frames are read in contiguous ranges")
            return self._read(a, max(a, b))
        i = int(key) + (self.frames if int(key) < 0 else 0)
        if not 0 <= i < self.frames:
            raise IndexError(f"frame {key} of {self.frames}")
        return self._read(i, i + 1)[0]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._read(0, self.frames), dtype)

    def _read(self, a: int, b: int) -> np.ndarray:
        with open(self.path, "rb") as f:
            return self.read_from(f, a, b)

    def read_from(self, f, a: int, b: int) -> np.ndarray:
        """Frames ``a:b`` from the spool already open as ``f``."""
        out = np.empty((b - a, *self.tail), self.dtype)
        if out.size:
            f.seek(a * self.frame_bytes)
            if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise OSError(f"spool file {self.path} is shorter than its {self.frames} frames")
        return out


def remove_stale_spools(folder: Path) -> list[Path]:
    """Delete spool folders and temporary result files left by writers whose process died (killed,
    power loss): their names carry the writer's pid. A live writer's files are never touched."""
    removed = []
    for p in folder.glob(".stchain-spool-*"):
        if _dead(p.name.split("-")[2]):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in folder.glob(".*.tmp-*"):
        if _dead(p.name.rsplit("-", 1)[-1]):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _dead(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours (PermissionError), or no such call: leave it
        return False
    return False


def json_default(o):
    """numpy scalars / arrays and paths as plain JSON (result metadata, metrics files)."""
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in result metadata")


_NP_DTYPES = {v: k for k, v in _ST_DTYPES.items()}


def load_result(path: str | os.PathLike) -> Result:
    """Read a result file (bounds-checked header, numpy only: Blender ships no safetensors/torch)."""
    from .safetensors_io import read_header

    header = read_header(path)
    tensors = {}
    with open(header.path, "rb") as f:
        for name, info in header.tensors.items():
            if name not in _DTYPES or info.dtype not in _ST_DTYPES.values():
                continue
            f.seek(header.data_start + info.begin)
            dtype = _NP_DTYPES[info.dtype]
            count = (info.end - info.begin) // dtype.itemsize
            tensors[name] = np.fromfile(f, dtype=dtype, count=count).reshape(info.shape)
    meta = json.loads(header.metadata.get("stchain", "{}"))
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} has result schema {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
    return Result(**tensors, metadata=meta)
