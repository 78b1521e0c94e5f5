"""``open_footage``: a chosen frame range of one clip, validated up front and read lazily.

Everything a user can get wrong is checked when the footage is opened and reported as one
``FootageError`` line naming the path and the frames; problems that still leave a usable clip
(the object leaving the picture on a few frames) become ``FootageWarning``s, also kept in
``Footage.warnings``. Large footage is downscaled (area average, numpy only) so its longer side
is at most ``max_side``; ``Footage.scale`` records the factor."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError
from .common import (
    DEFAULT_MAX_SIDE,
    FULL_FRAME_SHARE,
    MASK_THRESHOLD,
    MIN_OBJECT_SHARE,
    MIN_VISIBLE_SHARE,
    FootageWarning,
    frames_text,
)
from .masks import MaskSource, open_masks
from .pixels import fit_image, fit_mask, target_size
from ...lens import FootageLens, footage_lens
from .sources import Source, open_source

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
    mask_area: np.ndarray | None  # (count,) share of object pixels per chosen frame; None without masks
    rotation: int = 0  # counter-clockwise degrees applied to the stored video frames (display matrix)
    warnings: tuple[str, ...] = ()
    _frames: "Source" = field(repr=False, default=None)
    _masks: "MaskSource" = field(repr=False, default=None)
    _index: tuple[int, ...] = field(repr=False, default=())  # clip index of each chosen frame

    @property
    def mask_kind(self) -> str:
        """Where the masks come from (``MaskSource.kind``): "folder" | "alpha" | "none"."""
        return self._masks.kind

    def lens(self) -> FootageLens | None:
        """The 35 mm equivalent focal length the footage's own metadata names, or None."""
        return footage_lens(self.path, self.kind, (getattr(self._frames, "files", None) or [None])[0])

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
        mask = self._masks.with_frame(k, alpha)
        return fit_image(rgb, self.size).round().astype(np.uint8), fit_mask(mask, self.size)

    def read_range(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames ``a <= i < b`` stacked: RGB (n, H, W, 3) uint8 and masks (n, H, W) float32 or None."""
        frames = [self.read(i) for i in range(a, b)]
        rgb = np.stack([f[0] for f in frames]) if frames else np.zeros((0, self.size[1], self.size[0], 3), np.uint8)
        masks = np.stack([f[1] for f in frames]) if frames and frames[0][1] is not None else None
        return rgb, masks

    def read_masks(self, a: int, b: int) -> np.ndarray | None:
        """Masks of frames ``a <= i < b`` (n, H, W) float32 or None; a mask folder decodes no frame."""
        if not self._masks.per_frame or a >= b:
            return None
        return np.stack([fit_mask(self._masks.read(self._index[i]), self.size) for i in range(a, b)])

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
    source = open_source(path)
    try:
        index = _select(source, frames, path)
        mask_source = open_masks(masks, source, index)
        size = target_size(source.size, max_side)
        footage = Footage(
            path=path,
            kind=source.kind,
            frame_numbers=tuple(source.numbers[k] for k in index),
            fps=source.fps,
            timestamps=None if source.timestamps is None else tuple(source.timestamps[k] for k in index),
            source_size=source.size,
            size=size,
            mask_area=None,
            rotation=source.rotation,
            _frames=source,
            _masks=mask_source,
            _index=tuple(index),
        )
        _check_objects(footage)
    except BaseException:
        source.close()
        raise
    for message in footage.warnings:
        warnings.warn(message, FootageWarning, stacklevel=2)
    return footage


def _check_objects(footage: Footage) -> None:
    """Read every chosen mask once: record the object's share per frame and refuse unusable masks."""
    masks = footage._masks
    if not masks.per_frame:
        return
    shares, border, opaque = [], [], masks.opaque_is_none
    for k in footage._index:
        mask = masks.read(k)
        opaque = opaque and bool(mask.min() >= 1.0)
        inside = mask > MASK_THRESHOLD
        shares.append(float(inside.mean()))
        border.append(bool(inside[0].any() or inside[-1].any() or inside[:, 0].any() or inside[:, -1].any()))
    if opaque:  # an alpha channel that is opaque everywhere carries no mask
        footage._masks = MaskSource(None, footage._frames, list(footage._index))
        return
    footage.mask_area = np.asarray(shares, dtype=np.float32)
    _judge(footage, list(footage.frame_numbers), footage.mask_area, np.asarray(border))


def _judge(footage: Footage, numbers: list[int], shares: np.ndarray, border: np.ndarray) -> None:
    numbers = np.asarray(numbers)
    source = footage._masks.describe(footage.path)
    full = numbers[shares > FULL_FRAME_SHARE]
    if full.size:
        raise FootageError(
            f"{source}: the object fills the whole frame on {frames_text(full)} (inverted mask, or the object "
            "is too close); the object needs background around it"
        )
    empty = numbers[shares < MIN_OBJECT_SHARE]
    visible = len(numbers) - empty.size
    if empty.size and visible < max(1, MIN_VISIBLE_SHARE * len(numbers)):
        raise FootageError(
            f"{source}: the mask is empty on {frames_text(empty)}; the object is visible on only {visible} of "
            f"{len(numbers)} frames, choose frames where it is visible (--frames A:B) or fix the masks"
        )
    notes = []
    if empty.size:
        notes.append(f"{footage.path}: the object leaves the picture (empty mask) on {frames_text(empty)}")
    cut = numbers[border & (shares >= MIN_OBJECT_SHARE)]
    if cut.size:
        notes.append(f"{footage.path}: the object touches the frame border (partly outside) on {frames_text(cut)}")
    footage.warnings = tuple(notes)


# --------------------------------------------------------------------------------------------
# frame selection


def _select(source: Source, frames, path: Path) -> list[int]:
    first, last = source.numbers[0], source.numbers[-1]
    if frames is None:
        return list(range(len(source.numbers)))
    a, b = (int(v) for v in frames)
    if a > b or a < first or b > last:
        raise FootageError(
            f"frame range {a}-{b} is outside {path}, which has frames {first}-{last} (1-based, inclusive)"
        )
    return list(range(a - first, b - first + 1))
