"""Keep the worker's resident memory flat in clip length (Linux/glibc).

glibc raises its mmap threshold every time a large block is freed, so after a few windows the
large, varying-size tensors of the chain (candidate surfaces differ per frame) come from the heap
instead of mmap, fragment it, and the peak creeps up window after window although nothing is kept
(measured: +8 MB per window, +250% over 1,000 frames). Pinning the threshold keeps every block of
1 MB or more on mmap, returned to the OS when freed: the peak then stays where the first window puts it.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def pin_heap(threshold_bytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold (which also disables its adaptive growth); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold_bytes))
    except (OSError, AttributeError):  # another C library (e.g. musl): nothing to pin
        return False
