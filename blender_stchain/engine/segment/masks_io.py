"""Mask folders: one 8-bit PNG per frame (0 background, 255 object), named by the 1-based frame number.

Written frame by frame into ``OUT.part/`` and renamed into place when the clip is done, so a cancel or a
failure never leaves a half folder that looks finished.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise FootageError("writing and reading mask images needs Pillow: pip install blender_stchain[images]") from None
    return Image


def mask_name(frame: int) -> str:
    return f"{frame:06d}.png"


class MaskFolderWriter:
    """``write(frame, mask)`` streams one mask; ``finish()`` publishes the folder; ``abort()`` drops it."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise FootageError(f"--out {self.out} is a file; masks go into a folder")
        self.tmp = self.out.with_name(self.out.name + ".part")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.Image = _pil()

    def write(self, frame: int, mask: np.ndarray) -> None:
        img = self.Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
        img.save(self.tmp / mask_name(frame), optimize=False, compress_level=1)

    def write_rgb(self, frame: int, rgb: np.ndarray) -> None:
        self.Image.fromarray(rgb, mode="RGB").save(self.tmp / mask_name(frame), optimize=False, compress_level=1)

    def finish(self) -> Path:
        if self.out.is_dir():
            stale = [p for p in self.out.iterdir() if not p.name.endswith(".png")]
            if stale:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise FootageError(f"--out {self.out} holds other files ({stale[0].name}); give an empty or new folder")
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def mask_files(folder: str | os.PathLike, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FootageError(f"{what} {folder} is not a folder of mask images")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith(".")),
                   key=lambda p: [int(t) if t.isdigit() else t for t in _split_digits(p.stem)])
    if not files:
        raise FootageError(f"{what} {folder} holds no mask images")
    return files


def _split_digits(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        if cur and ch.isdigit() != cur[-1].isdigit():
            out.append(cur)
            cur = ""
        cur += ch
    return out + [cur] if cur else out


def read_mask(path: Path) -> np.ndarray:
    """(H, W) bool: object where the value (alpha if not opaque, else luminance) is above half."""
    Image = _pil()
    with Image.open(path) as img:
        if img.mode == "P":  # palette masks (DAVIS): index 0 is background, any other index an object
            return np.asarray(img) > 0
        if img.mode in ("RGBA", "LA") and np.asarray(img.getchannel("A")).min() < 255:
            arr = np.asarray(img.getchannel("A"))
        elif img.mode in ("1", "L", "I;16", "I"):
            arr = np.asarray(img.convert("L") if img.mode == "1" else img)
        else:
            arr = np.asarray(img.convert("L"))
    top = 65535 if arr.dtype == np.uint16 or arr.max(initial=0) > 255 else 255
    return arr > top / 2


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The frame with the background dimmed and the object tinted, to check masks by eye. ``mask`` (any size)
    is resampled to the frame by nearest neighbour."""
    h, w = rgb.shape[:2]
    rows = (np.arange(h) * mask.shape[0] // h)[:, None]
    cols = (np.arange(w) * mask.shape[1] // w)[None, :]
    m = mask[rows, cols][..., None]
    tint = np.array([255, 140, 0], np.float32)
    out = np.where(m, 0.7 * rgb + 0.3 * tint, 0.35 * rgb)
    return out.round().astype(np.uint8)
