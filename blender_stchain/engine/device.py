"""Device and precision choice: ``auto|cpu|cuda[:n]|mps``; fp32 on CPU, bf16/fp16 autocast on CUDA.

Under autocast the models keep the reference's fp32 islands themselves (FP32LayerNorm, RMSNorm
variance, RoPE, the time sinusoids, the stage-II query pass). TF32 is disabled so GPU fp32 runs
stay within the parity tolerances.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..contracts.errors import StchainError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SDPA_ORDER = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # autocast compute dtype; float32 means plain fp32 (no autocast)

    def autocast(self):
        """The context the models run under: autocast for bf16/fp16 (nothing for fp32), and on CUDA the
        exact SDPA backends in speed order (cuDNN, flash, memory-efficient; math last)."""
        stack = contextlib.ExitStack()
        if self.device.type == "cuda":
            stack.enter_context(sdpa_kernel(SDPA_ORDER, set_priority=True))
        if self.dtype != torch.float32:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.dtype))
        return stack


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable explicit choice is a clear error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise StchainError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise StchainError(f"device {name!r} is not available ({count} CUDA device(s) found): use --device cpu")
    elif dev.type == "mps" and not _mps_available():
        raise StchainError("device 'mps' is not available on this machine: use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise StchainError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return dev


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def choose_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """``auto``: bf16 on CUDA when supported (the reference default), else fp16; fp32 on CPU and MPS."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise StchainError(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
        if device.type == "cpu" and precision == "fp16":
            raise StchainError("fp16 is not supported on CPU: use fp32 (or bf16)")
        return PRECISIONS[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def disable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    disable_tf32()
    dev = resolve_device(device)
    return Runtime(dev, choose_dtype(dev, precision))


def synchronize(device) -> None:
    """Wait for the device's queued work (a timing then covers the work, not its launch)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def empty_cache(device) -> None:
    """Hand the device allocator's cached blocks back (after a model is dropped, before a retry)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.empty_cache()
    elif kind == "mps":
        torch.mps.empty_cache()


# A simulated accelerator (the test harness: CPU data presented as a device) names the real device
# whose rules it follows; nothing else fills this.
_SIMULATED: dict[str, str] = {}


def rules(device) -> str:
    """The device kind whose rules apply to ``device``: ``cpu``, ``cuda`` or ``mps``. Callers choose by
    it where a device lacks something (float64 or ops missing on MPS, concurrent MPS use)."""
    kind = torch.device(device).type
    return _SIMULATED.get(kind, kind)


def geometry_device(device) -> torch.device:
    """Where mesh geometry runs beside a model on ``device``: the device itself, but the host on MPS
    (float64 quadrics and fits, int64 scatter_reduce min/max, unique/sort of keys >= 2^24 and
    linalg.svd are missing or wrong there; the models still run on MPS)."""
    return torch.device("cpu") if rules(device) == "mps" else torch.device(device)


@contextlib.contextmanager
def simulate(device: torch.device, flavour: str):
    """Within the block, ``device`` follows the rules of ``flavour`` (``cuda`` or ``mps``)."""
    before = _SIMULATED.get(device.type)
    _SIMULATED[device.type] = flavour
    try:
        yield
    finally:
        if before is None:
            _SIMULATED.pop(device.type, None)
        else:
            _SIMULATED[device.type] = before
