"""Errors users read. Each carries one clear, actionable line; no traceback soup."""


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


class NumericalError(StchainError):
    """NaN or Inf appeared in a model output; names the stage."""


class OutOfMemory(StchainError):
    """Out of device or host memory even after the retry with smaller chunks; says what to lower."""


OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")


def out_of_memory(e: BaseException) -> bool:
    """Out of device or host memory, as Python and torch report it (CUDA and MPS: "... out of memory",
    the CPU allocator: "can't allocate memory" / "not enough memory"); torch-free for the worker."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(s in str(e) for s in OOM_TEXTS))


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
