"""The frames folder: how Blender hands decoded footage to the runtime (no codec needed there).

    FOLDER/meta.json         {"format": "blender_stchain.frames", "version": 1,
                              "fps": [num, den] | null, "frame_numbers": [1, 2, ...]}
    FOLDER/frames/000001.npy (H, W, 3 | 4) uint8 per frame, named by its 1-based frame number;
                             a 4th channel is the alpha, used as the mask

Optional keys say where a frame range came from, so a mask folder of the whole clip pairs with it as it
does with the clip itself: ``"clip_frames": N`` (frames in the whole clip; mask ``n`` in order is frame
``n``) and ``"names": [stem, ...]`` (the image file of each frame, for masks named like the frames).

``meta.json`` is written last, so a half-written folder is refused, not misread."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import FootageError

FRAMES_FORMAT = "blender_stchain.frames"
FRAMES_VERSION = 1
def write_frames(folder, frames: Iterable[np.ndarray], fps: Fraction | float | None, first_frame: int = 1,
                 clip_frames: int | None = None, names: list[str] | None = None) -> Path:
    """Write a frames folder (the format ``open_footage`` reads without Pillow or PyAV).

    ``frames`` yields (H, W, 3|4) uint8 arrays one at a time (streamed to disk); ``meta.json`` is
    written last so an interrupted write leaves a folder that is refused, never misread. ``clip_frames``
    and ``names`` (one per frame) record the clip the range came from (see above).
    """
    folder = Path(folder)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    numbers = []
    for n, rgb in enumerate(frames, start=first_frame):
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
            raise FootageError(f"frame {n}: expected (H, W, 3|4) uint8, got {rgb.shape} {rgb.dtype}")
        np.save(folder / "frames" / f"{n:06d}.npy", np.ascontiguousarray(rgb), allow_pickle=False)
        numbers.append(n)
    rate = None if fps is None else Fraction(fps).limit_denominator(1_000_000)
    meta = {
        "format": FRAMES_FORMAT,
        "version": FRAMES_VERSION,
        "fps": None if rate is None else [rate.numerator, rate.denominator],
        "frame_numbers": numbers,
    }
    if clip_frames is not None:
        meta["clip_frames"] = int(clip_frames)
    if names is not None:
        if len(names) != len(numbers):
            raise FootageError(f"frames folder {folder}: {len(names)} names for {len(numbers)} frames")
        meta["names"] = [str(n) for n in names]
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder
