"""The lens the footage says it was shot with: a 35 mm equivalent focal length from its own metadata.

Phones and cameras write it: ``FocalLengthIn35mmFilm`` in the EXIF of JPEG / PNG / TIFF frames, and
Apple's ``com.apple.quicktime.camera.focal_length.35mm_equivalent`` key in QuickTime / MP4
metadata. The EXIF is parsed here with the standard library (a few fields of a TIFF structure;
no image library needed); a video's keys come through PyAV, which already reads the footage.

A 35 mm equivalent gives the field of view on the diagonal of a 36 x 24 mm frame, so in footage
pixels the focal is ``f35 * hypot(W, H) / hypot(36, 24)``. Stabilised or cropped video can differ
from what the phone wrote: ``--focal-mm`` / ``--set camera_focal_px=`` override it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
EXIF_IFD, FOCAL_35MM = 0x8769, 0xA405  # TIFF tags: pointer to the Exif IFD; FocalLengthIn35mmFilm (SHORT)
QUICKTIME_KEYS = ("com.apple.quicktime.camera.focal_length.35mm_equivalent",)


@dataclass(frozen=True)
class FootageLens:
    focal_35mm: float  # 35 mm equivalent focal length (mm)
    tag: str  # where it was found, for the user: "EXIF 35mm equivalent" ...

    def focal_px(self, width: int, height: int) -> float:
        return self.focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM


def _ifd_value(tiff: bytes, offset: int, tag: int, order: str) -> int | None:
    """A SHORT or LONG value of ``tag`` in the IFD at ``offset`` of a TIFF structure (None if absent)."""
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    for i in range(count):
        at = offset + 2 + 12 * i
        if at + 12 > len(tiff):
            return None
        t, kind, n = struct.unpack_from(order + "HHI", tiff, at)
        if t == tag and n == 1 and kind in (3, 4):  # SHORT / LONG, stored inline
            return struct.unpack_from(order + ("H" if kind == 3 else "I"), tiff, at + 8)[0]
    return None


def exif_focal_35mm(tiff: bytes) -> float | None:
    """FocalLengthIn35mmFilm of a TIFF-structured EXIF block (0 means unknown in EXIF: None)."""
    if tiff[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
    exif = _ifd_value(tiff, ifd0, EXIF_IFD, order)
    value = _ifd_value(tiff, exif, FOCAL_35MM, order) if exif else None
    return float(value) if value else None


def _jpeg_exif(data: bytes) -> bytes | None:
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, (size,) = data[at + 1], struct.unpack_from(">H", data, at + 2)
        if marker == 0xE1 and data[at + 4:at + 10] == b"Exif\0\0":
            return data[at + 10:at + 2 + size]
        if marker in (0xDA, 0xD9):  # image data starts: no EXIF before it
            return None
        at += 2 + size
    return None


def _png_exif(data: bytes) -> bytes | None:
    at = 8
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"eXIf":
            return data[at + 8:at + 8 + size]
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + size
    return None


def image_lens(file: Path) -> FootageLens | None:
    """The 35 mm equivalent in an image's EXIF (JPEG APP1, PNG eXIf, TIFF), read from its first 256 KiB."""
    with open(file, "rb") as f:
        data = f.read(256 * 1024)
    if data[:2] == b"\xff\xd8":
        tiff = _jpeg_exif(data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        tiff = _png_exif(data)
    else:
        tiff = data
    value = exif_focal_35mm(tiff) if tiff else None
    return FootageLens(value, "EXIF 35mm equivalent") if value else None


def video_lens(file: Path) -> FootageLens | None:
    """The 35 mm equivalent in a video's QuickTime metadata keys (container or video stream)."""
    import av

    try:
        with av.open(str(file)) as container:
            tags = [dict(container.metadata)] + [dict(s.metadata) for s in container.streams.video]
    except av.error.FFmpegError:
        return None
    for key in QUICKTIME_KEYS:
        for found in (t[key] for t in tags if key in t):
            try:
                value = float(found)
            except ValueError:
                continue
            if 0 < value < 10_000:
                return FootageLens(value, "QuickTime 35mm equivalent")
    return None


def footage_lens(path, kind: str, first_file: Path | None = None) -> FootageLens | None:
    """The footage's own lens (None when it says nothing or cannot be read): a video's keys, or the
    EXIF of the first image of a sequence."""
    try:
        if kind == "video":
            return video_lens(Path(path))
        if kind == "images" and first_file is not None:
            return image_lens(first_file)
    except (OSError, ValueError, struct.error):
        return None
    return None
