"""Masks: a folder with one image per footage frame (paired by name with image frames, else by
order), the footage alpha, a single image for the first frame only, or none."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError
from .common import frames_text, size_text
from .pixels import decode_mask, image_files, image_header
from .sources import Source

# --------------------------------------------------------------------------------------------
# masks


class MaskFiles:
    def __init__(self, files: list[Path], numbers: list[int]):
        self.files = files
        self.numbers = numbers

    def read(self, k: int) -> np.ndarray:
        return decode_mask(self.files[k], self.numbers[k])


def open_masks(masks, source: Source, index: list[int]):
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
        mask = decode_mask(masks, source.numbers[0])
        _check_mask_size(mask.shape[::-1], source.size, source.numbers[:1], masks)
        return None, mask, "first_frame"
    files = _pair_masks(image_files(masks, "masks"), masks, source)
    sizes = [image_header(f, n, "mask")[0] for f, n in zip(files, source.numbers)]
    odd = [source.numbers[k] for k in index if sizes[k] != source.size]
    if odd:
        _check_mask_size(sizes[odd[0] - source.numbers[0]], source.size, odd, masks)
    return MaskFiles(files, source.numbers), None, "folder"


def _pair_masks(files: list[Path], folder: Path, source: Source) -> list[Path]:
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
        missing = f"; no mask of the same name for {frames_text(lacking)}" if lacking else ""
    raise FootageError(
        f"masks: {len(files)} mask images in {folder} for {len(source.numbers)} footage frames{missing}; "
        "give exactly one mask per frame"
    )


def _check_mask_size(size, frame_size, numbers, where) -> None:
    if tuple(size) != tuple(frame_size):
        raise FootageError(
            f"masks in {where} have the wrong size on {frames_text(numbers)}: {size_text(size)} instead of the "
            f"footage's {size_text(frame_size)}; masks must match the frames pixel for pixel"
        )
