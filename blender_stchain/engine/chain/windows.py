"""Splitting a clip into chained windows (docs/architecture.md 5.7) and choosing the anchor frame (5.1).

Consecutive windows share one boundary frame: window k+1 starts on the last frame of window k, whose
latent and tracked vertices carry the chain forward. Every window has at most ``size`` frames, so
per-window cost and memory do not depend on the clip length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    index: int
    start: int  # clip-relative index of the first frame (the known frame for index > 0)
    stop: int  # exclusive

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def plan_windows(num_frames: int, size: int) -> list[Window]:
    """Windows of ``size`` frames sharing one boundary frame; the last one may be shorter."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if size < 2:
        raise ValueError("windows need at least two frames to share a boundary frame")
    windows, start = [], 0
    while True:
        stop = min(start + size, num_frames)
        windows.append(Window(len(windows), start, stop))
        if stop == num_frames:
            return windows
        start = stop - 1


def choose_anchor(mask_areas: np.ndarray, window: Window, requested: int | None = None) -> int:
    """Clip index of the anchor: the requested window-relative frame, else the largest mask area.

    The largest visible silhouette gives the most complete anchor shape (docs/architecture.md 5.1).
    """
    if requested is not None:
        if not 0 <= requested < len(window):
            raise ValueError(f"anchor frame {requested} is outside the first window (0..{len(window) - 1})")
        return window.start + requested
    areas = np.asarray(mask_areas, dtype=np.float64)[window.start:window.stop]
    return window.start + int(np.argmax(areas))
