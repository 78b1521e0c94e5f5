"""Bounds-checked safetensors reading and streaming writing.

Why our own header check: a checkpoint is untrusted input (downloaded, half-written, or a lying header).
Everything the header claims is validated against the file size before a byte of tensor data is read or
allocated; only then does the safetensors library map the file. Pickle checkpoints are refused outright
because unpickling can execute code.

Format: 8-byte little-endian header length n, n bytes of UTF-8 JSON ``{name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}}``, then the data area; offsets are relative to
the data area, tensors tile it exactly (no gaps, no overlap) in offset order.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable
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


def _fail(path: Path, why: str) -> WeightsError:
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
        raise _fail(path, f"tensor {name!r} entry must have exactly dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise _fail(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
        raise _fail(path, f"tensor {name!r} has an invalid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise _fail(path, f"tensor {name!r} has invalid data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise _fail(path, f"tensor {name!r} offsets [{begin}, {end}] fall outside the {data_size}-byte data area (truncated or corrupt file)")
    nbytes = DTYPE_SIZES[dtype]
    for d in shape:  # Python ints: no overflow, and stops early once the size exceeds the span
        nbytes *= d
        if nbytes > end - begin:
            break
    if nbytes != end - begin:
        raise _fail(path, f"tensor {name!r} shape {shape} x {dtype} does not match its {end - begin}-byte span")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def _parse(path: Path, raw: bytes, data_size: int) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(path, f"unreadable header: {type(e).__name__}") from None
    if not isinstance(obj, dict):
        raise _fail(path, "header is not a JSON object")
    metadata = obj.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, "__metadata__ must map strings to strings")
    if len(obj) > MAX_TENSORS:
        raise _fail(path, f"more than {MAX_TENSORS} tensors")
    infos = {name: _tensor_info(path, name, entry, data_size) for name, entry in obj.items()}
    cursor = 0
    for info in sorted(infos.values(), key=lambda i: (i.begin, i.end)):
        if info.begin != cursor:
            what = "overlaps another tensor" if info.begin < cursor else "leaves a gap before it"
            raise _fail(path, f"tensor {info.name!r} {what}")
        cursor = info.end
    if cursor != data_size:
        raise _fail(path, f"tensors cover {cursor} of the {data_size} data bytes (truncated or padded file)")
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
            raise _fail(path, f"only {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise _fail(path, f"header length {n} exceeds the file ({size} bytes) or the {MAX_HEADER_BYTES}-byte limit")
        raw = f.read(n)
    if len(raw) != n:
        raise _fail(path, "file changed while reading")
    infos, metadata = _parse(path, raw, size - 8 - n)
    return Header(path, infos, metadata, 8 + n, size, raw)


def load_tensors(path: str | os.PathLike, device: str = "cpu", names: Iterable[str] | None = None) -> dict:
    """Validated load: the header is checked first, then the safetensors library maps the file."""
    import torch  # noqa: F401  (safetensors' "pt" framework needs it)
    from safetensors import safe_open

    header = read_header(path)
    wanted = list(header.tensors) if names is None else list(names)
    missing = [n for n in wanted if n not in header.tensors]
    if missing:
        raise WeightsError(f"{header.path}: missing tensor(s) {', '.join(missing[:5])}")
    try:
        with safe_open(str(header.path), framework="pt", device=str(device)) as f:
            return {n: f.get_tensor(n) for n in wanted}
    except Exception as e:  # the library's own checks (e.g. non-UTF-8 names) or I/O errors
        raise _fail(header.path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def identity(path: str | os.PathLike) -> str:
    """Cheap weight identity: sha256 over the validated header bytes and the file size."""
    header = read_header(path)
    h = hashlib.sha256(header.raw)
    h.update(str(header.file_size).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- writing

_TORCH_DTYPE_NAMES = {
    "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def dtype_name(torch_dtype) -> str:
    return _TORCH_DTYPE_NAMES[str(torch_dtype).removeprefix("torch.")]


def write_streaming(path: str | os.PathLike, specs: list[tuple[str, str, tuple[int, ...]]],
                    produce: Callable[[str], "object"], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file tensor by tensor: only one tensor is ever in memory.

    ``specs`` lists (name, dtype name, shape) in file order; ``produce(name)`` returns that tensor
    (contiguous, matching dtype and shape). Written to ``path.part`` and renamed when complete.
    """
    path = Path(path)
    header, cursor = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, dtype, shape in specs:
        nbytes = DTYPE_SIZES[dtype]
        for d in shape:
            nbytes *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [cursor, cursor + nbytes]}
        cursor += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data area 8-byte aligned
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, dtype, shape in specs:
            t = produce(name)
            if tuple(t.shape) != tuple(shape) or dtype_name(t.dtype) != dtype:
                raise ValueError(f"{name}: produced {tuple(t.shape)} {t.dtype}, declared {shape} {dtype}")
            f.write(_tensor_bytes(t))
            del t  # free it before the next one is produced
    os.replace(part, path)


def _tensor_bytes(t) -> bytes:
    import torch

    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
