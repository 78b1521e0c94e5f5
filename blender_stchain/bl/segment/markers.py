""""Segment object" in Blender: prompts from what the Movie Clip editor already holds, the
mask cache next to the .blend, and the segmentation job for the worker. No torch here.

Prompts: the tracking markers of the clip's active tracking object. A track whose name starts with
"bg" or "background" (any case) marks background; every other track marks the object. One frame is the
prompt frame: the frame in the range where the most object markers sit (the earliest of equals); every
enabled marker on it becomes a point (marker frames are clip frames = footage frames when the clip's
Frame Offset is 0). A Blender Mask, if chosen, adds its bounding box on that frame as a box prompt.
Masks are cached in ``//stchain_masks/<key>/`` beside the saved .blend (the user folder otherwise),
keyed by footage, frames, prompts and model, so Generate reuses them until any of those changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path

import bpy
import numpy as np

from ...contracts.errors import StchainError
from ...contracts.prompts import Box, Point, Prompts
from .. import footage, prefs

BACKGROUND = re.compile(r"^\s*(bg|background)", re.IGNORECASE)
WORKER = "blender_stchain.engine.segment.worker"
NO_PROMPT = ("Segment object needs a prompt: place tracking markers on the object in the Movie Clip editor (name "
             "a track 'bg...' to mark background), or choose a Mask around it")


def is_background(track) -> bool:
    return bool(BACKGROUND.match(track.name))


def _tracks(clip):
    active = clip.tracking.objects.active
    return active.tracks if active is not None else clip.tracking.tracks


def marker_prompts(clip, frames: tuple[int, int]) -> tuple[list[Point], int | None]:
    """Points (footage pixels, y down) on the prompt frame, and that frame; ([], None) without markers."""
    a, b = frames
    w, h = clip.size
    on: dict[int, list] = {}
    for track in _tracks(clip):
        for m in track.markers:
            if not m.mute and a <= m.frame <= b:
                on.setdefault(m.frame, []).append((track, m))
    positive = {f: sum(not is_background(t) for t, _ in ms) for f, ms in on.items()}
    if not any(positive.values()):
        return [], None
    frame = min(on, key=lambda f: (-positive[f], f))
    points = [Point(float(m.co[0]) * w, (1.0 - float(m.co[1])) * h, not is_background(t), frame)
              for t, m in sorted(on[frame], key=lambda tm: tm[0].name)]
    return points, frame


def mask_box(src: footage.Source, mask, frame: int) -> Box:
    """The bounding box of a Blender Mask rendered (by Blender) at footage size on ``frame``."""
    with tempfile.TemporaryDirectory(prefix="stchain-box-") as tmp:
        png = footage._render(src.size, frame, frame, Path(tmp), mask=mask)[0]
        inside = footage._read_rgba(png)[..., 0] >= 128
    if not inside.any():
        raise StchainError(f"Mask {mask.name!r} is empty on frame {frame}; draw it around the object on that frame")
    rows, cols = np.nonzero(inside)
    return Box(float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1), frame)


def collect(props, src: footage.Source, frames: tuple[int, int]) -> Prompts:
    points, frame = marker_prompts(props.clip, frames) if props.source == "CLIP" and props.clip else ([], None)
    boxes = []
    if props.mask_datablock is not None:
        boxes.append(mask_box(src, props.mask_datablock, frame or frames[0]))
    prompts = Prompts(tuple(points), tuple(boxes))
    if not prompts:
        raise StchainError(NO_PROMPT)
    return prompts


def cache_dir(footage_path: str, frames: tuple[int, int], prompts: Prompts, model: str) -> Path:
    key = json.dumps([str(footage_path), list(frames), prompts.key(), model])
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = Path(bpy.path.abspath("//stchain_masks")) if bpy.data.filepath else prefs.user_dir("masks")
    return base / name


def cached(folder: Path, frames: tuple[int, int]) -> bool:
    want = {f"{n:06d}.png" for n in range(frames[0], frames[1] + 1)}
    return folder.is_dir() and want <= {p.name for p in folder.iterdir()}


def write_job(path: Path, frames_dir: Path, out: Path, prompts: Prompts, model: str, weights, device,
              overlay: bool = True, allow_random: bool = False) -> Path:
    job = {"footage": str(frames_dir), "out": str(out), "frames": None, "weights": weights, "model": model,
           "device": device, "allow_random_weights": allow_random,
           "points": [[p.x, p.y, p.positive, p.frame] for p in prompts.points],
           "boxes": [[b.x0, b.y0, b.x1, b.y1, b.frame] for b in prompts.boxes],
           "overlay": str(overlay_dir(out)) if overlay else None}
    path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    return path


def overlay_dir(folder: Path) -> Path:
    """Beside the masks, never inside (a mask folder must hold masks only)."""
    return folder.with_name(folder.name + "-overlay")


def show(folder: Path, frames: tuple[int, int]):
    """The footage under its masks (object tinted, background dimmed) as the Movie Clip "4D Mesh masks", an
    image sequence to play in the Movie Clip editor; the bare masks when there is no overlay."""
    name = "4D Mesh masks"
    old = bpy.data.movieclips.get(name)
    if old is not None:
        bpy.data.movieclips.remove(old)
    shown = overlay_dir(folder) if overlay_dir(folder).is_dir() else folder
    clip = bpy.data.movieclips.load(str(shown / f"{frames[0]:06d}.png"), check_existing=False)
    clip.name = name
    clip.frame_start = frames[0]
    return clip


