"""Errors users read. Each carries one clear, actionable line; no traceback soup. Also how a job learns
that it was cancelled (``FileCancel``), beside the ``Cancelled`` error it then raises."""

from __future__ import annotations

import os


class StchainError(Exception):
    """Base class: the message is meant for the user as is."""


class WeightsError(StchainError):
    """Missing, partial, corrupt or wrong checkpoints."""


class FootageError(StchainError):
    """Footage or masks that cannot be used."""


class JobError(StchainError):
    """A job file that does not match its schema."""


class Cancelled(StchainError):
    """The user cancelled; nothing was written."""

    def __init__(self, message: str = "cancelled by the user"):
        super().__init__(message)


def no_cancel() -> bool:
    return False


class FileCancel:
    """Cancelled once ``path`` exists (Blender creates ``JOB.json.cancel``) or a signal arrived."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = path
        self.flag = False

    def __call__(self) -> bool:
        return self.flag or (self.path is not None and os.path.exists(self.path))


class NumericalError(StchainError):
    """NaN or Inf appeared in a model output; names the stage."""


class OutOfMemory(StchainError):
    """Out of device or host memory even after the retry with smaller chunks; says what to lower."""


OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")


ONEDNN_NO_PRIMITIVE = "could not create a primitive"  # oneDNN (CPU) when building a kernel fails


def out_of_memory(e: BaseException) -> bool:
    """Out of device or host memory, as Python and torch report it (CUDA and MPS: "... out of memory",
    the CPU allocator: "can't allocate memory" / "not enough memory"; oneDNN: "could not create a
    primitive" when a kernel's own buffers cannot be allocated, whereas a layout it does not support
    fails earlier, as "could not create a primitive descriptor ..."); torch-free for the worker."""
    if isinstance(e, MemoryError):
        return True
    text = str(e).strip() if isinstance(e, RuntimeError) else ""
    return any(s in text for s in OOM_TEXTS) or onednn_failed(e)


def onednn_failed(e: BaseException) -> bool:
    """oneDNN could not build a kernel; measured: once that happens for want of memory, oneDNN keeps
    failing in that process even after memory is back, so a retry must run without it."""
    return isinstance(e, RuntimeError) and str(e).strip().endswith(ONEDNN_NO_PRIMITIVE)


class DeviceError(StchainError):
    """The device cannot run the models (no kernels for the card, an operation the backend lacks)."""


# what torch says when the device cannot run an op -> the line a person reads (matched in the first line)
DEVICE_FAILURES = (
    ("no kernel image is available", "this torch build has no CUDA kernels for this GPU's architecture: install "
     "the runtime built for your card (`python -m blender_stchain devices` names it), or use --device cpu"),
    ("for 'MPS'", "an operation is not implemented on the Apple GPU (MPS): set PYTORCH_ENABLE_MPS_FALLBACK=1 (the "
     "worker does), update macOS and torch, or use --device cpu"),
    ("implemented for the MPS device", "an operation is not implemented on the Apple GPU (MPS): set "
     "PYTORCH_ENABLE_MPS_FALLBACK=1 (the worker does), update macOS and torch, or use --device cpu"),
)


def device_failure(e: BaseException) -> DeviceError | None:
    """A RuntimeError/NotImplementedError meaning the device cannot run an op, as one ``DeviceError``
    line naming the fix (torch's own first line kept in brackets); None for anything else."""
    if not isinstance(e, (RuntimeError, NotImplementedError)):
        return None
    first = (str(e).strip().splitlines() or [""])[0]
    for needle, advice in DEVICE_FAILURES:
        if needle in first:
            return DeviceError(f"{advice} (torch: {first[:160]})")
    return None


class UsageError(StchainError):
    """A command line that does not parse (unknown option, missing value, bad choice)."""


# Exit codes of every entry point (README "Exit codes"): the worker, `run`, the bpy module path,
# `blender -b -P scripts/stchain_run.py`, `blender -c stchain` and the `weights` commands.
EXIT_OK = 0  # done
EXIT_ERROR = 1  # a user-facing error: one line on stderr that says the next step
EXIT_CANCELLED = 2  # cancelled (cancel file, Esc, Ctrl+C, SIGTERM); nothing was written
EXIT_INTERNAL = 3  # a bug: the traceback is on stderr


def exit_code(e: BaseException) -> int:
    if isinstance(e, (Cancelled, KeyboardInterrupt)):
        return EXIT_CANCELLED
    return EXIT_ERROR if isinstance(e, StchainError) else EXIT_INTERNAL
