"""Footage export for the worker: Blender decodes (its own FFmpeg and image readers), the worker
reads plain arrays, so the bundled runtime needs no codec.

Frames folder (the format ``engine.footage.open_footage`` reads without Pillow or PyAV)::

    FOLDER/meta.json          {"format": "blender_stchain.frames", "version": 1,
                               "fps": [num, den] | null, "frame_numbers": [a, a+1, ..., b],
                               "clip_frames": N, "names": [image stem, ...] (image sequences)}
    FOLDER/frames/NNNNNN.npy  (H, W, 3 | 4) uint8 per frame, named by its 1-based footage frame
                              number, rows top to bottom, RGB as stored in the footage

``meta.json`` is written last, so an interrupted export is refused, not misread. A fourth channel
is the object mask (255 = object, 0 = background), made by one of the mask sources of
``contracts.masks`` (``MASK_EXPORTS`` below): the footage alpha, the luma/chroma key, or a Blender
Mask datablock rendered by Blender's compositor at footage size (mask animation at scene frame =
footage frame number).

Decoding creates temporary datablocks (images, a movie clip, a scratch scene for the sequencer)
and removes them before returning; the user's scene and data are left as they were.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..contracts.errors import FootageError
from ..contracts.frames import write_frames
from ..contracts.masks import mask_source
from ..contracts.terminal import quiet_stdout

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp", ".tga"}


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


def export(source: Source, frames: tuple[int, int] | None, folder, mask: str = "none", blender_mask=None) -> Path:
    """Write frames ``a..b`` (1-based, inclusive) of ``source`` into ``folder`` in the format above, the mask
    from the source called ``mask`` (``contracts.masks``); ``blender_mask`` is used only by sources that need it."""
    info = mask_source(mask)
    if info.needs_mask_datablock and blender_mask is None:
        raise FootageError(f"mask source {mask!r} needs a Blender Mask: choose one in the 4D Mesh panel")
    a, b = frames or (1, source.count)
    if a < 1 or b > source.count or a > b:
        raise FootageError(f"frame range {a}:{b} is outside the footage (1-{source.count})")
    numbers = list(range(a, b + 1))
    with tempfile.TemporaryDirectory(prefix="decode-") as scratch:
        if source.kind == "images":
            files = [source.files[n - 1] for n in numbers]
        else:
            files = _render(source.size, a, b, Path(scratch) / "footage", movie=source.path)
        masker = MASK_EXPORTS[info.name](source.size, a, b, Path(scratch), blender_mask)

        def frames_rgba():
            for i, (n, f) in enumerate(zip(numbers, files)):
                rgba = _read_rgba(f)
                if rgba.shape[:2] != (source.size[1], source.size[0]):
                    raise FootageError(f"footage frame {n} ({f}) is {rgba.shape[1]}x{rgba.shape[0]}, "
                                       f"expected {source.size[0]}x{source.size[1]}")
                yield masker.apply(rgba, i)

        names = [Path(f).stem for f in files] if source.kind == "images" else None
        return write_frames(folder, frames_rgba(), source.fps, first_frame=a, clip_frames=source.count, names=names)


# --------------------------------------------------------------------------------------------
# mask sources: how each source of contracts.masks fills the exported frames' 4th channel


class _NoMask:
    """RGB only: the engine sees no mask. Subclasses set the 4th channel of one footage frame."""

    name = "none"

    def __init__(self, size, a: int, b: int, scratch: Path, blender_mask=None):
        pass

    def apply(self, rgba: np.ndarray, i: int) -> np.ndarray:
        """The exported frame for the ``i``-th frame of the range (RGBA uint8 as decoded)."""
        return rgba[..., :3]


class _FootageAlpha(_NoMask):
    name = "alpha"

    def apply(self, rgba, i):
        return rgba


class _Segmented(_NoMask):
    """RGB only: the masks come from SAM 2.1 segmentation (``bl/segment``), not from the frames."""

    name = "segment"


class _BlenderMask(_NoMask):
    """The Mask datablock rendered by the compositor at footage size, one PNG per frame, up front."""

    name = "mask"

    def __init__(self, size, a, b, scratch, blender_mask=None):
        self.files = _render(size, a, b, scratch / "mask", mask=blender_mask)

    def apply(self, rgba, i):
        rgba[..., 3] = np.where(_read_rgba(self.files[i])[..., 0] >= 128, 255, 0)
        return rgba


class _LumaKey(_NoMask):
    """Dark background: object where Rec.709 luma > 1/8."""

    name = "luma"

    def apply(self, rgba, i):
        return _keyed(rgba, rgba[..., :3].astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32) > 32.0)


class _ChromaKey(_NoMask):
    """Background = the median colour of the border pixels; object = pixels far from it."""

    name = "chroma"

    def apply(self, rgba, i):
        rgb = rgba[..., :3].astype(np.float32)
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        return _keyed(rgba, np.linalg.norm(rgb - np.median(border, 0), axis=-1) > 48.0)


def _keyed(rgba: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = rgba.copy()
    out[..., 3] = np.where(keep, 255, 0)
    return out


MASK_EXPORTS = {c.name: c for c in (_NoMask, _FootageAlpha, _Segmented, _BlenderMask, _LumaKey, _ChromaKey)}


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


def _render(size, a: int, b: int, out: Path, movie: str | None = None, mask=None) -> list[str]:
    """Render frames a..b to PNGs in a scratch scene: a movie strip through the sequencer (Blender's
    FFmpeg) or a Mask through the compositor. The scratch scene is removed afterwards."""
    scene = bpy.data.scenes.new("stchain decode")
    had_render_result = "Render Result" in bpy.data.images
    tree = None
    try:
        if movie:
            ed = scene.sequence_editor_create()
            strips = ed.strips if hasattr(ed, "strips") else ed.sequences  # 5.0 renamed the collection
            strips.new_movie("footage", movie, channel=1, frame_start=1)
            scene.render.use_sequencer = True
        else:
            tree = _mask_compositor(scene, mask)
        scene.frame_start, scene.frame_end = a, b
        r = scene.render
        r.resolution_x, r.resolution_y = size
        r.resolution_percentage = 100
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        r.filepath = str(out / "######")
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        with quiet_stdout():  # Blender prints a "Saved:" line per frame
            bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
        if tree is not None:
            bpy.data.node_groups.remove(tree)
        if not had_render_result and "Render Result" in bpy.data.images:
            bpy.data.images.remove(bpy.data.images["Render Result"])
    files = [out / f"{n:06d}.png" for n in range(a, b + 1)]
    missing = [str(f.name) for f in files if not f.is_file()]
    if missing:
        raise FootageError(f"Blender could not render frame {missing[0]} of {movie or mask.name}")
    return [str(f) for f in files]


def _mask_compositor(scene, mask):
    """Mask node -> output; 5.0+ uses a compositor node group, 4.x the scene's own node tree.
    Returns the node group to delete afterwards (None on 4.x: it goes with the scene)."""
    if hasattr(scene, "compositing_node_group"):
        tree = bpy.data.node_groups.new("stchain mask", "CompositorNodeTree")
        scene.compositing_node_group = tree
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        output = tree.nodes.new("NodeGroupOutput")
    else:
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        output = tree.nodes.new("CompositorNodeComposite")
    node = tree.nodes.new("CompositorNodeMask")
    node.mask = mask
    tree.links.new(node.outputs[0], output.inputs[0])
    return tree if hasattr(scene, "compositing_node_group") else None


def _natural(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]
