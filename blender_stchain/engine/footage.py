"""Footage and masks outside Blender: lazy, streaming readers with up-front validation.

``open_footage`` accepts a folder of images (RGBA alpha becomes the mask), a video file (PyAV), or a
*frames folder* written by Blender. Frames are decoded one at a time when read, never the whole clip.
Everything a user can get wrong is checked when the footage is opened and reported as one
``FootageError`` line naming the path and the frames; problems that still leave a usable clip (the
object leaving the picture on a few frames) become ``FootageWarning``s, also kept in
``Footage.warnings``.

Frames folder (the in-Blender path; Blender decodes with its own FFmpeg, so no codec is needed here)::

    FOLDER/meta.json         {"format": "blender_stchain.frames", "version": 1,
                              "fps": [num, den] | null, "frame_numbers": [1, 2, ...]}
    FOLDER/frames/000001.npy (H, W, 3 | 4) uint8 per frame, named by its 1-based frame number;
                             a 4th channel is the alpha, used as the mask

``meta.json`` is written last (``write_frames``), so a half-written folder is refused, not misread.

Masks: a folder with one image per footage frame (paired by name with image frames, else by
order), the footage alpha, a single image for the first frame only, or none. Mask values are read as
floats in [0, 1] (8-bit /255, 16-bit /65535, alpha used when a mask image has a non-opaque alpha);
a pixel belongs to the object where the value is above ``MASK_THRESHOLD``. A single mask image is
the mask of the clip's first frame only: it is kept as ``Footage.anchor_mask`` (for the anchor frame and
its crop) while ``read`` returns no per-frame masks, because a mask from one frame is wrong for
any other frame of a moving object.

Large footage is downscaled (area average, numpy only) so its longer side is at most ``max_side``;
``Footage.scale`` records the factor so cameras are reported in footage pixels
(``to_footage_pixels``).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import FootageError

DEFAULT_MAX_SIDE = 1024  # longer side of the frames handed to the pipeline, in pixels
MASK_THRESHOLD = 0.5  # mask value above which a pixel belongs to the object
MIN_OBJECT_SHARE = 0.001  # object pixels below this share of the frame: the object is not visible
FULL_FRAME_SHARE = 0.98  # object pixels above this share: the object fills the frame (or the mask is inverted)
MIN_VISIBLE_SHARE = 0.5  # at least this share of the chosen frames must show the object
FRAMES_FORMAT = "blender_stchain.frames"
FRAMES_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")
_IMAGES_EXTRA = "reading image files needs Pillow: pip install blender_stchain[images]"
_VIDEO_EXTRA = "reading video files needs PyAV: pip install blender_stchain[video]"


class FootageWarning(UserWarning):
    """A problem that leaves the footage usable; the message names the frames."""


# --------------------------------------------------------------------------------------------
# public API


@dataclass(eq=False)
class Footage:
    """A chosen frame range of one clip. Index ``i`` (0-based) is footage frame ``frame_numbers[i]``."""

    path: Path
    kind: str  # "images" | "video" | "frames"
    frame_numbers: tuple[int, ...]  # 1-based footage frame numbers of the chosen range
    fps: Fraction | None  # container rate for videos, meta fps for frames folders, None for images
    timestamps: tuple[float, ...] | None  # presentation time in seconds per chosen frame (videos)
    source_size: tuple[int, int]  # (W, H) of the footage as players show it (after display rotation)
    size: tuple[int, int]  # (W, H) of the frames ``read`` returns
    mask_kind: str  # "folder" | "alpha" | "first_frame" | "none"
    mask_area: np.ndarray | None  # (count,) share of object pixels per chosen frame; None without per-frame masks
    anchor_mask: np.ndarray | None  # (H, W) float32 mask of the clip's first frame when mask_kind == "first_frame"
    masks_path: Path | None = None  # the masks argument, when one was given
    rotation: int = 0  # counter-clockwise degrees applied to the stored video frames (display matrix)
    warnings: tuple[str, ...] = ()
    _frames: "_Source" = field(repr=False, default=None)
    _masks: "_MaskFiles | None" = field(repr=False, default=None)
    _index: tuple[int, ...] = field(repr=False, default=())  # clip index of each chosen frame

    @property
    def count(self) -> int:
        return len(self.frame_numbers)

    def __len__(self) -> int:
        return self.count

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): delivered pixels per footage pixel."""
        return self.size[0] / self.source_size[0], self.size[1] / self.source_size[1]

    def to_footage_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) in the delivered frames -> footage pixels (corner convention)."""
        return np.asarray(xy, dtype=np.float64) / np.asarray(self.scale)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame ``i`` of the chosen range: RGB uint8 (H, W, 3) and mask float32 (H, W) in [0, 1] or None."""
        if not 0 <= i < self.count:
            raise IndexError(f"frame index {i} outside 0..{self.count - 1}")
        k = self._index[i]
        rgb, alpha = self._frames.read(k)
        mask = None
        if self.mask_kind == "folder":
            mask = self._masks.read(k)
        elif self.mask_kind == "alpha":
            mask = alpha
        return _fit(rgb, self.size).round().astype(np.uint8), _fit_mask(mask, self.size)

    def read_range(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames ``a <= i < b`` stacked: RGB (n, H, W, 3) uint8 and masks (n, H, W) float32 or None."""
        frames = [self.read(i) for i in range(a, b)]
        rgb = np.stack([f[0] for f in frames]) if frames else np.zeros((0, self.size[1], self.size[0], 3), np.uint8)
        masks = np.stack([f[1] for f in frames]) if frames and frames[0][1] is not None else None
        return rgb, masks

    def close(self) -> None:
        self._frames.close()

    def __enter__(self) -> "Footage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_footage(
    path,
    masks=None,
    frames: tuple[int, int] | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Footage:
    """Open and validate footage (+ masks); ``frames`` is a 1-based inclusive (first, last) range.

    Cheap checks read file headers only. Videos are decoded once (without conversion) to learn the
    exact frame count and timestamps; masks (and, for the alpha kind, the frames) are read once to
    check every chosen frame shows the object. Nothing is kept in memory but per-frame numbers.
    """
    path = Path(path)
    if not path.exists():
        raise FootageError(f"footage not found: {path}")
    source = _open_source(path)
    try:
        index = _select(source, frames, path)
        mask_files, anchor, kind = _open_masks(masks, source, index)
        size = _target_size(source.size, max_side)
        footage = Footage(
            path=path,
            kind=source.kind,
            frame_numbers=tuple(source.numbers[k] for k in index),
            fps=source.fps,
            timestamps=None if source.timestamps is None else tuple(source.timestamps[k] for k in index),
            source_size=source.size,
            size=size,
            mask_kind=kind,
            mask_area=None,
            anchor_mask=_fit_mask(anchor, size),
            masks_path=None if masks is None else Path(masks),
            rotation=source.rotation,
            _frames=source,
            _masks=mask_files,
            _index=tuple(index),
        )
        _check_objects(footage)
    except BaseException:
        source.close()
        raise
    for message in footage.warnings:
        warnings.warn(message, FootageWarning, stacklevel=2)
    return footage


def write_frames(folder, frames: Iterable[np.ndarray], fps: Fraction | float | None, first_frame: int = 1) -> Path:
    """Write a frames folder (the format ``open_footage`` reads without Pillow or PyAV).

    ``frames`` yields (H, W, 3|4) uint8 arrays one at a time (streamed to disk); ``meta.json`` is
    written last so an interrupted write leaves a folder that is refused, never misread.
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
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------
# frame sources: numbers, size, fps, and read(k) -> (rgb uint8 HxWx3, alpha float32 HxW | None)


class _Source:
    kind: str
    numbers: list[int]
    size: tuple[int, int]
    fps: Fraction | None = None
    timestamps: list[float] | None = None
    has_alpha: bool = False
    rotation: int = 0  # counter-clockwise degrees applied to make frames upright (videos)
    names: list[str] | None = None  # file stems, to pair mask files by name

    def read(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _open_source(path: Path) -> _Source:
    if path.is_dir():
        if (path / "meta.json").exists() or (path / "frames").is_dir():
            return _FramesFolder(path)
        return _ImageFiles(path, _image_files(path, "footage"))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ImageFiles(path, [path])
    if path.stat().st_size == 0:
        raise FootageError(f"footage file is empty (0 bytes): {path}")
    return _VideoFile(path)


class _ImageFiles(_Source):
    kind = "images"

    def __init__(self, root: Path, files: list[Path]):
        self.files = files
        self.numbers = list(range(1, len(files) + 1))
        self.names = [f.stem for f in files]
        headers = [_image_header(f, n, "frame") for n, f in zip(self.numbers, files)]
        self.size = headers[0][0]
        self.has_alpha = headers[0][1]
        odd = [n for n, (size, _) in zip(self.numbers, headers) if size != self.size]
        if odd:
            w, h = headers[odd[0] - 1][0]
            raise FootageError(
                f"frames differ in size in {root}: {_frames_text(odd)} (e.g. {files[odd[0] - 1].name}, "
                f"{w}x{h}) differ from frame 1 ({_wh(self.size)}); all frames must have one size"
            )

    def read(self, k):
        return _decode_rgb(self.files[k], self.numbers[k])


class _FramesFolder(_Source):
    kind = "frames"

    def __init__(self, root: Path):
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise FootageError(f"frames folder {root} has no meta.json (incomplete write); export the frames again")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            numbers = [int(n) for n in meta["frame_numbers"]]
            fps = meta.get("fps")
            self.fps = None if fps is None else Fraction(int(fps[0]), int(fps[1]))
            ok = meta.get("format") == FRAMES_FORMAT and meta.get("version") == FRAMES_VERSION
        except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError):
            ok = False
        if not ok:
            raise FootageError(f"{meta_path} is not a {FRAMES_FORMAT} v{FRAMES_VERSION} file; export the frames again")
        if not numbers:
            raise FootageError(f"footage has no frames: {meta_path} lists none")
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or numbers[0] < 1:
            raise FootageError(f"{meta_path}: frame_numbers must be consecutive and start at 1 or later")
        self.numbers = numbers
        self.files = [root / "frames" / f"{n:06d}.npy" for n in numbers]
        shapes = [self._header(f, n).shape for f, n in zip(self.files, numbers)]
        self.size = (shapes[0][1], shapes[0][0])
        self.has_alpha = shapes[0][2] == 4
        odd = [n for n, s in zip(numbers, shapes) if s[:2] != shapes[0][:2]]
        if odd:
            raise FootageError(
                f"frames differ in size in {root}: {_frames_text(odd)} differ from frame {numbers[0]} "
                f"({_wh(self.size)}); all frames must have one size"
            )

    @staticmethod
    def _header(file: Path, n: int) -> np.ndarray:
        if not file.exists():
            raise FootageError(f"frame {n} is missing: {file}")
        try:
            arr = np.load(file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise FootageError(f"cannot read frame {n} ({file}): truncated or not a .npy array ({e})") from None
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4) or 0 in arr.shape:
            raise FootageError(f"frame {n} ({file}) must be (H, W, 3|4) uint8, found {arr.shape} {arr.dtype}")
        return arr

    def read(self, k):
        arr = np.array(self._header(self.files[k], self.numbers[k]))
        alpha = arr[..., 3].astype(np.float32) / 255.0 if arr.shape[2] == 4 else None
        return arr[..., :3], alpha


class _VideoFile(_Source):
    """A video decoded with PyAV. Probing decodes every packet once (no pixel conversion) because
    containers misreport counts (edit lists, variable rates); reads then stream forward, seeking
    back to a keyframe only when asked for an earlier frame. Frames are turned upright by the
    container's display rotation (phone clips), as players show them; mirror flags are ignored."""

    kind = "video"

    def __init__(self, path: Path):
        self.path = path
        self._container = None
        self._decoder = None
        self._next = 0  # clip index the open decoder yields next
        container, stream = self._open()
        try:
            pts = self._probe(container, stream)
            rate = stream.average_rate or stream.guessed_rate
            w, h = stream.codec_context.width, stream.codec_context.height
        finally:
            container.close()
        if not pts:
            raise FootageError(f"footage has no frames: no video frame decodes from {path}")
        base = stream.time_base
        self.pts = pts
        self._pos = {p: k for k, p in enumerate(pts)}
        self.timestamps = [float(p * base) for p in pts]
        self.numbers = list(range(1, len(pts) + 1))
        self.fps = Fraction(rate) if rate else _rate_from_times(self.timestamps)
        self.size = (h, w) if self.rotation % 180 else (w, h)

    def _open(self):
        av = _import_av()
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise FootageError(
                f"cannot read video {self.path}: truncated, damaged or not a video ({_short(e)})"
            ) from None
        if not container.streams.video:
            container.close()
            raise FootageError(f"{self.path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container, stream

    def _probe(self, container, stream) -> list[int]:
        av = _import_av()
        pts = []
        try:
            for frame in container.decode(stream):
                if not pts:  # counter-clockwise degrees that make the picture upright
                    self.rotation = round((frame.rotation or 0) / 90) % 4 * 90
                pts.append(frame.pts if frame.pts is not None else (pts[-1] + 1 if pts else 0))
        except av.error.FFmpegError as e:
            raise FootageError(
                f"video {self.path} is truncated or damaged: decoding stops after frame {len(pts)} ({_short(e)})"
            ) from None
        # threaded decoders can end quietly at missing data; the index still knows the full count
        # (one frame less may decode legitimately: an edit list can discard a packet)
        if stream.frames > len(pts) + 1:
            raise FootageError(
                f"video {self.path} is truncated or damaged: decoding stops after frame {len(pts)} "
                f"of the {stream.frames} its index lists"
            )
        return sorted(pts)

    def read(self, k):
        if self._decoder is None or k < self._next:
            self._seek(k)
        frame = self._advance(k)
        if frame is None:  # the seek landed past k: decode from the start instead
            self._seek(0)
            frame = self._advance(k)
        if frame is None:
            raise FootageError(f"frame {k + 1} of {self.path} no longer decodes (did the file change?)")
        return np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), self.rotation // 90)), None

    def _advance(self, k: int):
        for frame in self._decoder:
            j = self._pos.get(frame.pts)
            if j is None:
                continue
            self._next = j + 1
            if j >= k:
                return frame if j == k else None
        return None

    def _seek(self, k: int) -> None:
        self.close()
        self._container, stream = self._open()
        if k > 0:
            self._container.seek(self.pts[k], stream=stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(stream)
        self._next = k

    def close(self):
        if self._container is not None:
            self._container.close()
        self._container = self._decoder = None


def _rate_from_times(times: list[float]) -> Fraction | None:
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return Fraction((len(times) - 1) / (times[-1] - times[0])).limit_denominator(100_000)


# --------------------------------------------------------------------------------------------
# masks


class _MaskFiles:
    def __init__(self, files: list[Path], numbers: list[int]):
        self.files = files
        self.numbers = numbers

    def read(self, k: int) -> np.ndarray:
        return _decode_mask(self.files[k], self.numbers[k])


def _open_masks(masks, source: _Source, index: list[int]):
    """-> (per-frame mask files | None, anchor mask | None, mask kind)."""
    if masks is None:
        return None, None, "alpha" if source.has_alpha else "none"
    masks = Path(masks)
    if not masks.exists():
        raise FootageError(f"masks not found: {masks}")
    if masks.is_file():
        if 0 not in index:
            raise FootageError(
                f"mask {masks} is a single mask for frame {source.numbers[0]}, which is outside the chosen frames "
                f"{source.numbers[index[0]]}-{source.numbers[index[-1]]}; include frame {source.numbers[0]} or pass a "
                "folder with one mask per frame"
            )
        mask = _decode_mask(masks, source.numbers[0])
        _check_mask_size(mask.shape[::-1], source.size, source.numbers[:1], masks)
        return None, mask, "first_frame"
    files = _pair_masks(_image_files(masks, "masks"), masks, source)
    sizes = [_image_header(f, n, "mask")[0] for f, n in zip(files, source.numbers)]
    odd = [source.numbers[k] for k in index if sizes[k] != source.size]
    if odd:
        _check_mask_size(sizes[odd[0] - source.numbers[0]], source.size, odd, masks)
    return _MaskFiles(files, source.numbers), None, "folder"


def _pair_masks(files: list[Path], folder: Path, source: _Source) -> list[Path]:
    """Masks pair with image frames by file name when every frame has a same-named mask, else by order."""
    if source.names is not None:
        by_stem = {f.stem: f for f in files}
        if all(name in by_stem for name in source.names):
            return [by_stem[name] for name in source.names]
    if len(files) == len(source.numbers):
        return files
    missing = ""
    if source.names is not None:
        lacking = [n for n, name in zip(source.numbers, source.names) if name not in {f.stem for f in files}]
        missing = f"; no mask of the same name for {_frames_text(lacking)}" if lacking else ""
    raise FootageError(
        f"masks: {len(files)} mask images in {folder} for {len(source.numbers)} footage frames{missing}; "
        "give exactly one mask per frame"
    )


def _check_mask_size(size, frame_size, numbers, where) -> None:
    if tuple(size) != tuple(frame_size):
        raise FootageError(
            f"masks in {where} have the wrong size on {_frames_text(numbers)}: {_wh(size)} instead of the "
            f"footage's {_wh(frame_size)}; masks must match the frames pixel for pixel"
        )


def _check_objects(footage: Footage) -> None:
    """Read every chosen mask once: record the object's share per frame and refuse unusable masks."""
    if footage.mask_kind == "first_frame":
        share = float((footage.anchor_mask > MASK_THRESHOLD).mean())
        _judge(footage, footage.frame_numbers[:1], np.array([share]), np.array([False]), anchor_only=True)
        return
    if footage.mask_kind == "none":
        return
    shares, border, opaque = [], [], True
    for i in range(footage.count):
        k = footage._index[i]
        mask = footage._masks.read(k) if footage.mask_kind == "folder" else footage._frames.read(k)[1]
        opaque = opaque and footage.mask_kind == "alpha" and bool(mask.min() >= 1.0)
        inside = mask > MASK_THRESHOLD
        shares.append(float(inside.mean()))
        border.append(bool(inside[0].any() or inside[-1].any() or inside[:, 0].any() or inside[:, -1].any()))
    if opaque:  # an alpha channel that is opaque everywhere carries no mask
        footage.mask_kind = "none"
        return
    footage.mask_area = np.asarray(shares, dtype=np.float32)
    _judge(footage, list(footage.frame_numbers), footage.mask_area, np.asarray(border))


def _judge(footage: Footage, numbers: list[int], shares: np.ndarray, border: np.ndarray, anchor_only=False) -> None:
    numbers = np.asarray(numbers)
    source = f"masks of {footage.path}" if footage.mask_kind == "alpha" else f"masks {footage.masks_path}"
    full = numbers[shares > FULL_FRAME_SHARE]
    if full.size:
        raise FootageError(
            f"{source}: the object fills the whole frame on {_frames_text(full)} (inverted mask, or the object "
            "is too close); the object needs background around it"
        )
    empty = numbers[shares < MIN_OBJECT_SHARE]
    visible = len(numbers) - empty.size
    if empty.size and anchor_only:
        raise FootageError(
            f"{source}: the mask of frame {numbers[0]} is empty (no value above {MASK_THRESHOLD}); fix the mask"
        )
    if empty.size and visible < max(1, MIN_VISIBLE_SHARE * len(numbers)):
        raise FootageError(
            f"{source}: the mask is empty on {_frames_text(empty)}; the object is visible on only {visible} of "
            f"{len(numbers)} frames, choose frames where it is visible (--frames A:B) or fix the masks"
        )
    notes = []
    if empty.size:
        notes.append(f"{footage.path}: the object leaves the picture (empty mask) on {_frames_text(empty)}")
    cut = numbers[border & (shares >= MIN_OBJECT_SHARE)]
    if cut.size:
        notes.append(f"{footage.path}: the object touches the frame border (partly outside) on {_frames_text(cut)}")
    footage.warnings = tuple(notes)


# --------------------------------------------------------------------------------------------
# files, images and pixels


def _image_files(folder: Path, what: str) -> list[Path]:
    files = sorted(
        (f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise FootageError(f"{what} folder {folder} holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return files


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name.lower())]


def _image_header(file: Path, n: int, what: str) -> tuple[tuple[int, int], bool]:
    """(size, has alpha) from the file header, without decoding pixels."""
    Image = _import_pil()
    try:
        with Image.open(file) as im:
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            return im.size, alpha
    except (OSError, ValueError, SyntaxError) as e:
        raise FootageError(f"cannot read {what} {n} ({file}): {_unreadable(file, e)}") from None


def _open_pixels(file: Path, n: int, what: str):
    Image = _import_pil()
    try:
        im = Image.open(file)
        im.load()
        return im
    except (OSError, ValueError, SyntaxError) as e:
        raise FootageError(f"cannot read {what} {n} ({file}): {_unreadable(file, e)}") from None


def _unreadable(file: Path, e: Exception) -> str:
    if file.exists() and file.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    if file.suffix.lower() == ".exr":
        return "this Pillow cannot read OpenEXR; convert the frames to 16-bit PNG or TIFF"
    return f"damaged, truncated or not an image ({_short(e)})"


def _decode_rgb(file: Path, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> RGB uint8 (+ alpha float32): grayscale is repeated, 16 bit is rescaled."""
    im = _open_pixels(file, n, "frame")
    with im:
        if im.mode.startswith("I") or im.mode == "F":
            gray = _unit(np.asarray(im), im.mode)
            return np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=2), None
        if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
            arr = np.asarray(im.convert("RGBA"))
            return arr[..., :3].copy(), arr[..., 3].astype(np.float32) / 255.0
        return np.asarray(im.convert("RGB")).copy(), None


def _decode_mask(file: Path, n: int) -> np.ndarray:
    """A mask image -> float32 (H, W) in [0, 1]: its alpha when that is not opaque, else its gray level."""
    im = _open_pixels(file, n, "mask")
    with im:
        if im.mode.startswith("I") or im.mode == "F":
            return _unit(np.asarray(im), im.mode).astype(np.float32)
        if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
            alpha = np.asarray(im.convert("RGBA"))[..., 3]
            if alpha.min() < 255:
                return alpha.astype(np.float32) / 255.0
        return np.asarray(im.convert("L")).astype(np.float32) / 255.0


def _unit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Integer (16-bit) or float single-channel pixels -> [0, 1]."""
    if mode == "F":
        return np.clip(arr.astype(np.float64), 0.0, 1.0)
    return np.clip(arr.astype(np.float64) / 65535.0, 0.0, 1.0)


def _target_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average resize to (W, H); exact box filter, so downscaling never aliases."""
    if img.shape[1] == size[0] and img.shape[0] == size[1]:
        return img
    if img.ndim == 3:  # one channel at a time keeps the float64 buffers of a 4K frame small
        return np.stack([_fit(img[..., c], size) for c in range(img.shape[2])], axis=-1)
    return _area_axis(_area_axis(img.astype(np.float64), size[1], 0), size[0], 1)


def _fit_mask(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    return None if mask is None else _fit(mask, size).astype(np.float32)


def _area_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Box-filter resample along one axis via the cumulative sum at fractional edges."""
    n_in = a.shape[axis]
    c = np.cumsum(a, axis=axis)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo = np.minimum(np.floor(edges).astype(np.int64), n_in)
    hi = np.minimum(lo + 1, n_in)
    frac = (edges - lo).reshape([-1 if d == axis else 1 for d in range(a.ndim)])
    c_lo = np.take(c, lo, axis=axis)
    s = c_lo + frac * (np.take(c, hi, axis=axis) - c_lo)
    return np.diff(s, axis=axis) / (n_in / n_out)


# --------------------------------------------------------------------------------------------
# selection, optional imports, message helpers


def _select(source: _Source, frames, path: Path) -> list[int]:
    first, last = source.numbers[0], source.numbers[-1]
    if frames is None:
        return list(range(len(source.numbers)))
    a, b = (int(v) for v in frames)
    if a > b or a < first or b > last:
        raise FootageError(
            f"frame range {a}-{b} is outside {path}, which has frames {first}-{last} (1-based, inclusive)"
        )
    return list(range(a - first, b - first + 1))


def _import_pil():
    try:
        from PIL import Image
    except ImportError:
        raise FootageError(_IMAGES_EXTRA) from None
    return Image


def _import_av():
    try:
        import av
    except ImportError:
        raise FootageError(_VIDEO_EXTRA) from None
    return av


def _short(e: Exception) -> str:
    """The reason without the path (FFmpeg errors repeat it)."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0][:160]


def _wh(size) -> str:
    return f"{size[0]}x{size[1]}"


def _frames_text(numbers) -> str:
    return f"frame{'s' if len(numbers) > 1 else ''} {_ranges(numbers)}"


def _ranges(numbers, limit: int = 8) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (at most ``limit`` runs, then how many more frames)."""
    runs: list[list[int]] = []
    for n in sorted(int(v) for v in numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit])
    rest = sum(b - a + 1 for a, b in runs[limit:])
    return text + (f" and {rest} more" if rest else "")
