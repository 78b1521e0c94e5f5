"""Reading and writing safetensors tensors with torch: validated loads, streamed writes."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

from ...contracts.errors import WeightsError
from ...contracts.safetensors_io import DTYPE_SIZES, fail, read_header


def load_tensors(path: str | os.PathLike, device: str = "cpu", names: Iterable[str] | None = None,
                 convert: Callable | None = None) -> dict:
    """Validated load: the header is checked first, then the safetensors library maps the file.
    ``convert(name, tensor)``, applied as each tensor is read (a cast: one wide tensor at a time)."""
    import torch  # noqa: F401  (safetensors' "pt" framework needs it)
    from safetensors import safe_open

    header = read_header(path)
    wanted = list(header.tensors) if names is None else list(names)
    missing = [n for n in wanted if n not in header.tensors]
    if missing:
        raise WeightsError(f"{header.path}: missing tensor(s) {', '.join(missing[:5])}")
    try:
        with safe_open(str(header.path), framework="pt", device=str(device)) as f:
            return {n: f.get_tensor(n) if convert is None else convert(n, f.get_tensor(n)) for n in wanted}
    except Exception as e:  # the library's own checks (e.g. non-UTF-8 names) or I/O errors
        if "os error 12" in str(e) or isinstance(e, MemoryError):  # ENOMEM: memory, not a corrupt file
            raise MemoryError(f"{header.path}: not enough memory to map it ({e})") from None
        raise fail(header.path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


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
