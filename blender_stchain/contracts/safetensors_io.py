"""Bounds-checked safetensors header reading (numpy/torch-free, so Blender can read results).

Why our own header check: a checkpoint is untrusted input (downloaded, half-written, or a lying header).
Everything the header claims is validated against the file size before a byte of tensor data is read or
allocated; only then does the safetensors library map the file (``engine.weights.tensors``). Pickle
checkpoints are refused outright because unpickling can execute code.

Format: 8-byte little-endian header length n, n bytes of UTF-8 JSON ``{name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}}``, then the data area; offsets are relative to
the data area, tensors tile it exactly (no gaps, no overlap) in offset order."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
MAX_TENSORS = 1_000_000
MAX_NDIM = 16
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offset in the data area
    end: int


@dataclass(frozen=True)
class Header:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int  # file offset of the data area
    file_size: int
    raw: bytes  # the header JSON as stored (for the cheap identity)


def refuse_pickle(path: Path, head: bytes = b"") -> None:
    """Raise for pickle/zip checkpoints: loading them could run arbitrary code."""
    looks_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if path.suffix.lower() in PICKLE_SUFFIXES or looks_pickle or head.startswith(_ZIP_MAGIC):
        raise WeightsError(
            f"{path}: refusing a pickle/PyTorch checkpoint (it can execute code when loaded); "
            "use the official .safetensors file instead")


def fail(path: Path, why: str) -> WeightsError:
    return WeightsError(f"{path}: not a valid safetensors file ({why}); delete it and download it again")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key in header")
    return dict(pairs)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tensor_info(path: Path, name: str, entry, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise fail(path, f"tensor {name!r} entry must have exactly dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:  # a list or dict is not even hashable
        raise fail(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
        raise fail(path, f"tensor {name!r} has an invalid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise fail(path, f"tensor {name!r} has invalid data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise fail(path, f"tensor {name!r} offsets [{begin}, {end}] fall outside the {data_size}-byte data area (truncated or corrupt file)")
    nbytes = DTYPE_SIZES[dtype]
    for d in shape:  # Python ints: no overflow, and stops early once the size exceeds the span
        nbytes *= d
        if nbytes > end - begin:
            break
    if nbytes != end - begin:
        raise fail(path, f"tensor {name!r} shape {shape} x {dtype} does not match its {end - begin}-byte span")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def _parse(path: Path, raw: bytes, data_size: int) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise fail(path, f"unreadable header: {type(e).__name__}") from None
    if not isinstance(obj, dict):
        raise fail(path, "header is not a JSON object")
    metadata = obj.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail(path, "__metadata__ must map strings to strings")
    if len(obj) > MAX_TENSORS:
        raise fail(path, f"more than {MAX_TENSORS} tensors")
    infos = {name: _tensor_info(path, name, entry, data_size) for name, entry in obj.items()}
    cursor = 0
    for info in sorted(infos.values(), key=lambda i: (i.begin, i.end)):
        if info.begin != cursor:
            what = "overlaps another tensor" if info.begin < cursor else "leaves a gap before it"
            raise fail(path, f"tensor {info.name!r} {what}")
        cursor = info.end
    if cursor != data_size:
        raise fail(path, f"tensors cover {cursor} of the {data_size} data bytes (truncated or padded file)")
    return infos, metadata


def read_header(path: str | os.PathLike) -> Header:
    """Validate a safetensors header against the file size; reads only the header bytes."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    refuse_pickle(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        refuse_pickle(path, head)
        if len(head) < 8:
            raise fail(path, f"only {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise fail(path, f"header length {n} exceeds the file ({size} bytes) or the {MAX_HEADER_BYTES}-byte limit")
        raw = f.read(n)
    if len(raw) != n:
        raise fail(path, "file changed while reading")
    infos, metadata = _parse(path, raw, size - 8 - n)
    return Header(path, infos, metadata, 8 + n, size, raw)


def identity(path: str | os.PathLike) -> str:
    """Cheap weight identity: sha256 over the validated header bytes and the file size."""
    header = read_header(path)
    h = hashlib.sha256(header.raw)
    h.update(str(header.file_size).encode())
    return h.hexdigest()
