"""Keep the worker's resident memory flat in clip length (Linux/glibc).

glibc raises its mmap threshold every time a large block is freed, so after a few windows the
large, varying-size tensors of the chain (candidate surfaces differ per frame) come from the heap
instead of mmap, fragment it, and the peak creeps up window after window although nothing is kept
(measured: +8 MB per window, +250% over 1,000 frames). Pinning the threshold keeps every block of
1 MB or more on mmap, returned to the OS when freed: the peak then stays where the first window puts it.
Smaller blocks still leave free holes in the heap (measured: +2.5 MB per window); ``release_heap``
between windows collects garbage cycles and hands those holes back.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def pin_heap(threshold_bytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold (which also disables its adaptive growth); False elsewhere."""
    libc = _libc()
    try:
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes)) if libc else False
    except AttributeError:  # another C library (e.g. musl): nothing to pin
        return False


def release_heap() -> bool:
    """Free garbage cycles, then return the heap's free pages to the OS (glibc ``malloc_trim``);
    False where there is no glibc. Cheap next to a window (tens of milliseconds)."""
    gc.collect()
    libc = _libc()
    try:
        return bool(libc.malloc_trim(0)) if libc else False
    except AttributeError:
        return False
