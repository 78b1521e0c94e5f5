"""Footage export for the worker: Blender decodes (its own FFmpeg and image readers), the worker
reads plain arrays, so the bundled runtime needs no codec.

Format (``<job>/frames/``, read by ``engine.footage`` without Pillow or PyAV):
- ``meta.json``: ``{"format": "stchain-frames", "version": 1, "fps": float, "frame_numbers": [int, ...]
  (1-based footage frame numbers, ascending), "size": [W, H], "channels": 3 | 4, "source": str,
  "mask": "none" | "alpha" | "luma" | "chroma"}``
- one ``NNNNNN.npy`` per frame, named by its footage frame number (6 digits, ``000001.npy``): uint8
  array ``(H, W, channels)``, rows top to bottom, RGB in the footage's own (display) encoding.
  ``channels == 4``: the fourth channel is the object mask (255 = object, 0 = background) taken
  from the footage alpha or computed by the luma/chroma key.

Decoding creates temporary datablocks (images, a movie clip, a scratch scene for the sequencer)
and removes them before returning; the user's scene and data are left as they were.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..engine.errors import FootageError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp", ".tga"}
MASK_MODES = ("none", "alpha", "luma", "chroma")


@dataclass
class Source:
    kind: str  # "video" | "images"
    path: str  # video file, or the image folder
    files: list[str]  # image files in frame order (empty for video)
    count: int
    fps: float
    size: tuple[int, int]


def probe(path: str, fps_default: float = 24.0) -> Source:
    """Describe a video file, an image folder or one image of a sequence (no frames decoded)."""
    p = Path(bpy.path.abspath(path))
    if not p.exists():
        raise FootageError(f"footage {p} does not exist")
    if p.is_dir() or p.suffix.lower() in IMAGE_EXTS:
        folder = p if p.is_dir() else p.parent
        files = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS), key=_natural)
        if not files:
            raise FootageError(f"footage folder {folder} holds no images")
        img = _load_image(files[0])
        size = tuple(img.size)
        bpy.data.images.remove(img)
        return Source("images", str(folder), [str(f) for f in files], len(files), fps_default, size)
    clip = bpy.data.movieclips.load(str(p), check_existing=False)
    try:
        count, fps, size = clip.frame_duration, float(clip.fps), tuple(clip.size)
    finally:
        bpy.data.movieclips.remove(clip)
    if count < 1 or size[0] < 1:
        raise FootageError(f"footage {p} cannot be decoded by Blender (no frames)")
    return Source("video", str(p), [], count, fps, size)


def export(source: Source, frames: tuple[int, int] | None, folder, mask: str = "none") -> Path:
    """Write frames ``a..b`` (1-based, inclusive) of ``source`` into ``folder`` in the format above."""
    if mask not in MASK_MODES:
        raise FootageError(f"mask source {mask!r} is not one of {', '.join(MASK_MODES)}")
    a, b = frames or (1, source.count)
    if a < 1 or b > source.count or a > b:
        raise FootageError(f"frame range {a}:{b} is outside the footage (1-{source.count})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(a, b + 1))
    channels = 3 if mask == "none" else 4
    with tempfile.TemporaryDirectory(prefix="decode-") as scratch:
        if source.kind == "images":
            files = [source.files[n - 1] for n in numbers]
        else:
            files = _decode_video(source, a, b, Path(scratch))
        for n, f in zip(numbers, files):
            rgba = _read_rgba(f)
            if rgba.shape[:2] != (source.size[1], source.size[0]):
                raise FootageError(f"footage frame {n} ({f}) is {rgba.shape[1]}x{rgba.shape[0]}, "
                                   f"expected {source.size[0]}x{source.size[1]}")
            np.save(folder / f"{n:06d}.npy", _with_mask(rgba, mask)[..., :channels])
    meta = {"format": "stchain-frames", "version": 1, "fps": source.fps, "frame_numbers": numbers,
            "size": list(source.size), "channels": channels, "source": source.path, "mask": mask}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder


def _with_mask(rgba: np.ndarray, mask: str) -> np.ndarray:
    """Alpha passes through; the keys threshold the distance from the background colour."""
    if mask in ("none", "alpha"):
        return rgba
    rgb = rgba[..., :3].astype(np.float32)
    if mask == "luma":  # dark background: object where Rec.709 luma > 1/8
        keep = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32) > 32.0
    else:  # chroma: background = the median colour of the border pixels
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        keep = np.linalg.norm(rgb - np.median(border, 0), axis=-1) > 48.0
    out = rgba.copy()
    out[..., 3] = np.where(keep, 255, 0)
    return out


def _read_rgba(path) -> np.ndarray:
    img = _load_image(path)
    try:
        w, h = img.size
        buf = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(buf)  # bottom row first, RGBA floats of the stored bytes / 255
    finally:
        bpy.data.images.remove(img)
    return np.ascontiguousarray(np.round(buf.reshape(h, w, 4)[::-1] * 255.0).clip(0, 255).astype(np.uint8))


def _load_image(path):
    try:
        img = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as e:
        raise FootageError(f"Blender cannot read {path}: {e}") from None
    return img


def _decode_video(source: Source, a: int, b: int, out: Path) -> list[str]:
    """Render frames a..b of a movie strip in a scratch scene to PNGs (sequencer = Blender's FFmpeg)."""
    scene = bpy.data.scenes.new("stchain decode")
    had_render_result = "Render Result" in bpy.data.images
    try:
        ed = scene.sequence_editor_create()
        strips = ed.strips if hasattr(ed, "strips") else ed.sequences
        strips.new_movie("footage", source.path, channel=1, frame_start=1)
        scene.frame_start, scene.frame_end = a, b
        r = scene.render
        r.resolution_x, r.resolution_y = source.size
        r.resolution_percentage = 100
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        r.filepath = str(out / "######")
        r.use_sequencer = True
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
        if not had_render_result and "Render Result" in bpy.data.images:
            bpy.data.images.remove(bpy.data.images["Render Result"])
    files = [out / f"{n:06d}.png" for n in range(a, b + 1)]
    missing = [str(f.name) for f in files if not f.is_file()]
    if missing:
        raise FootageError(f"Blender could not decode frames {missing[0]}... of {source.path}")
    return [str(f) for f in files]


def _natural(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]
