"""Where the engine's per-frame object masks come from, behind one interface (``MaskSource``).

``open_masks`` asks each class of ``MASK_SOURCES`` in turn whether it takes the ``masks`` argument
and the footage; the first that does reads the masks. A new source is one class and one line in
``MASK_SOURCES``. (The Blender-side sources, keys and Mask datablocks, arrive here as the footage
alpha of an exported frames folder: ``contracts.masks``, ``bl/footage.py``.)

A single mask image is refused: the mask of one frame is wrong for every other frame of a moving
object, so it cannot stand in for per-frame masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError
from .common import frames_text, size_text
from .pixels import decode_mask, image_files, image_header
from .sources import Source


class MaskSource:
    """Per-frame object masks of one clip, float32 (H, W) in [0, 1] at footage size, or none at all."""

    kind = "none"  # Footage.mask_kind
    opaque_is_none = False  # an opaque mask on every chosen frame means "no mask" (an unused alpha channel)

    @classmethod
    def takes(cls, masks: Path | None, frames: Source) -> bool:
        """Whether this source reads the user's ``masks`` argument for these footage frames."""
        return masks is None

    def __init__(self, masks: Path | None, frames: Source, index: list[int]):
        self.path, self.frames = masks, frames

    @property
    def per_frame(self) -> bool:
        return self.kind != "none"

    def read(self, k: int) -> np.ndarray | None:
        """The mask of clip frame ``k``, decoding whatever it needs."""
        return None

    def with_frame(self, k: int, alpha: np.ndarray | None) -> np.ndarray | None:
        """The mask of clip frame ``k`` when the frame (and its ``alpha``) is decoded anyway."""
        return self.read(k)

    def describe(self, footage_path: Path) -> str:
        """How messages name these masks."""
        return f"masks {self.path}"


class FootageAlpha(MaskSource):
    """The frames' own alpha: RGBA images, or a frames folder exported by Blender with a 4th channel."""

    kind = "alpha"
    opaque_is_none = True

    @classmethod
    def takes(cls, masks, frames):
        return masks is None and frames.has_alpha

    def read(self, k):
        return self.frames.read(k)[1]

    def with_frame(self, k, alpha):
        return alpha

    def describe(self, footage_path):
        return f"masks of {footage_path}"


class MaskFolder(MaskSource):
    """A folder with one mask image per footage frame, paired by name with image frames, else by order."""

    kind = "folder"

    @classmethod
    def takes(cls, masks, frames):
        return masks is not None and masks.is_dir()

    def __init__(self, masks, frames, index):
        super().__init__(masks, frames, index)
        self.files = _pair_masks(image_files(masks, "masks"), masks, frames)
        sizes = [image_header(f, n, "mask")[0] for f, n in zip(self.files, frames.numbers)]
        odd = [frames.numbers[k] for k in index if sizes[k] != frames.size]
        if odd:
            _check_mask_size(sizes[odd[0] - frames.numbers[0]], frames.size, odd, masks)

    def read(self, k):
        return decode_mask(self.files[k], self.frames.numbers[k])


MASK_SOURCES = (MaskFolder, FootageAlpha, MaskSource)  # asked in this order; MaskSource = no masks


def open_masks(masks, frames: Source, index: list[int]) -> MaskSource:
    """The mask source for the ``masks`` argument (None: the footage's own alpha, if any)."""
    path = None if masks is None else Path(masks)
    if path is not None and not path.exists():
        raise FootageError(f"masks not found: {path}")
    for cls in MASK_SOURCES:
        if cls.takes(path, frames):
            return cls(path, frames, index)
    raise FootageError(
        f"masks {path} is a single image; give a folder with one mask image per footage frame (named like the "
        "frames, or in frame order)"
    )


def _pair_masks(files: list[Path], folder: Path, source: Source) -> list[Path]:
    """Masks pair with image frames by file name when every frame has a same-named mask, else by order; a
    range exported from a longer clip (Blender's frames folder) also takes the whole clip's masks, mask
    ``n`` in order for frame ``n``, as the clip itself would."""
    if source.names is not None:
        by_stem = {f.stem: f for f in files}
        if all(name in by_stem for name in source.names):
            return [by_stem[name] for name in source.names]
    if len(files) == len(source.numbers):
        return files
    if source.clip_frames is not None and len(files) == source.clip_frames:
        return [files[n - 1] for n in source.numbers]
    missing = ""
    if source.names is not None:
        lacking = [n for n, name in zip(source.numbers, source.names) if name not in {f.stem for f in files}]
        missing = f"; no mask of the same name for {frames_text(lacking)}" if lacking else ""
    whole = f" (or {source.clip_frames}, one per frame of the whole clip)" if source.clip_frames else ""
    raise FootageError(
        f"masks: {len(files)} mask images in {folder} for {len(source.numbers)} footage frames{missing}; "
        f"give exactly one mask per frame{whole}"
    )


def _check_mask_size(size, frame_size, numbers, where) -> None:
    if tuple(size) != tuple(frame_size):
        raise FootageError(
            f"masks in {where} have the wrong size on {frames_text(numbers)}: {size_text(size)} instead of the "
            f"footage's {size_text(frame_size)}; masks must match the frames pixel for pixel"
        )
