"""Silence Blender's own per-frame lines (``render | Saved: ...``) while it decodes footage for a job:
a headless run's output is then the job's progress alone."""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager


def _flush_c_stdout() -> None:
    try:
        libc = ctypes.CDLL(None) if os.name != "nt" else ctypes.cdll.msvcrt
        libc.fflush(None)
    except (OSError, AttributeError):
        pass


@contextmanager
def quiet_stdout():
    """Point file descriptor 1 at the null device for the block (C and Python output alike)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real stdout (some GUI launches): nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
