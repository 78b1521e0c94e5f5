"""Keep the worker's resident memory flat in clip length without paying for it in page faults (Linux/glibc).

glibc raises its mmap threshold every time a large block is freed, so after a few windows the
large, varying-size tensors of the chain (candidate surfaces differ per frame) come from the heap
instead of mmap, fragment it, and the peak creeps up window after window although nothing is kept
(measured: +8 MB per window, +250% over 1,000 frames). ``pin_heap`` fixes the threshold, which stops
that growth: blocks of ``MMAP_BYTES`` or more always come from mmap and go back to the OS when freed.
The threshold is 32 MB, not lower: at 1 MB every mid-size temporary (decoder activations, the camera's
pair arrays) is a fresh mmap whose pages the kernel zero-fills again (measured: 16 of 40 s of a
50-frame run in system time). Blocks under 32 MB stay in the heap and the heap is not trimmed inside a
window; ``release_heap`` between windows collects garbage cycles and hands every free page back, so
the peak is still set by one window.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters
MMAP_BYTES = 32 << 20  # glibc's own ceiling for its adaptive threshold
TOP_PAD_BYTES = 64 << 20  # the heap grows in steps of this, not page by page


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def pin_heap(threshold_bytes: int = MMAP_BYTES) -> bool:
    """Fix glibc's mmap threshold (which also disables its adaptive growth) and leave trimming to
    ``release_heap``; False elsewhere. Also moves every object alive now (imported modules: hundreds
    of thousands) out of the cyclic collector's reach after one full collection, so the collection
    in ``release_heap`` scans only what the run made (90 ms -> a few ms per window)."""
    gc.collect()
    gc.freeze()
    libc = _libc()
    try:
        settings = ((M_MMAP_THRESHOLD, threshold_bytes), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, TOP_PAD_BYTES))
        return all([bool(libc.mallopt(k, v)) for k, v in settings]) if libc else False
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
