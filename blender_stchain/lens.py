"""The lens the footage says it was shot with: a 35 mm equivalent focal length from its own metadata.

Phones and cameras write it: ``FocalLengthIn35mmFilm`` in the EXIF of JPEG / PNG / TIFF frames, and
Apple's ``com.apple.quicktime.camera.focal_length.35mm_equivalent`` key in the QuickTime metadata
(``moov/meta`` or ``moov/udta/meta``: ``keys`` + ``ilst``) of MOV / MP4 files. Both are parsed here with the standard
library (a few fields of a TIFF structure, a few boxes of a movie), so the runtime and Blender (which
has neither Pillow nor PyAV for the extension) read them the same way.

A 35 mm equivalent gives the field of view on the diagonal of a 36 x 24 mm frame, so in footage
pixels the focal is ``f35 * hypot(W, H) / hypot(36, 24)``. Stabilised or cropped video can differ
from what the phone wrote: ``--focal-mm`` or ``camera_footage_lens=ignore`` override it.
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


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, payload end) of the ISO / QuickTime boxes in data[start:end]."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < head or start + size > end:
            return
        yield kind, start + head, start + size
        start += size


def _moov(file: Path, limit: int = 64 << 20) -> bytes | None:
    """The ``moov`` box of a movie, skipping ``mdat`` and the rest by seeking (the movie header may sit at the
    end of the file); None when absent or implausibly large."""
    with open(file, "rb") as f:
        while True:
            head = f.read(16)
            if len(head) < 8:
                return None
            size, kind = struct.unpack_from(">I4s", head)
            skip = 8
            if size == 1 and len(head) == 16:
                size, skip = struct.unpack_from(">Q", head, 8)[0], 16
            if size < skip:
                return None
            if kind == b"moov":
                return None if size > limit else (head + f.read(size - len(head)))[skip:size]
            f.seek(size - len(head), 1)


def _meta_value(data: bytes, start: int, end: int):
    """The value of an ``ilst`` item's ``data`` box: text or a number (well-known types 1, 21-24)."""
    for kind, a, b in _boxes(data, start, end):
        if kind != b"data" or b - a < 8:
            continue
        code, raw = int.from_bytes(data[a + 1:a + 4], "big"), data[a + 8:b]
        if code == 1:
            return raw.decode("utf-8", "replace")
        if code in (21, 22) and len(raw) in (1, 2, 4, 8):
            return int.from_bytes(raw, "big", signed=code == 21)
        if code in (23, 24) and len(raw) == (4 if code == 23 else 8):
            return struct.unpack(">f" if code == 23 else ">d", raw)[0]
    return None


def _metas(moov: bytes):
    """(start, end) of the ``meta`` boxes in ``moov`` and in ``moov/udta`` (Apple writes the first, FFmpeg
    the second)."""
    for kind, a, b in _boxes(moov):
        if kind == b"meta":
            yield a, b
        elif kind == b"udta":
            yield from ((s, e) for k, s, e in _boxes(moov, a, b) if k == b"meta")


def quicktime_keys(moov: bytes) -> dict:
    """Key -> value of the metadata keys of a ``moov`` payload. ``meta`` is a full box in MP4 files
    (version and flags first) and a plain one in QuickTime files: both are read."""
    out = {}
    for a, b in _metas(moov):
        first = a + 4 if moov[a:a + 4] == b"\0\0\0\0" else a
        children = {k: (s, e) for k, s, e in _boxes(moov, first, b)}
        if b"keys" not in children or b"ilst" not in children:
            continue
        ks, ke = children[b"keys"]
        names, at = [], ks + 8  # version / flags, entry count
        while at + 8 <= ke:
            size = struct.unpack_from(">I", moov, at)[0]
            if size < 8:
                break
            names.append(moov[at + 8:at + size].decode("utf-8", "replace"))
            at += size
        for index, s, e in _boxes(moov, *children[b"ilst"]):
            i = int.from_bytes(index, "big") - 1
            if 0 <= i < len(names):
                out[names[i]] = _meta_value(moov, s, e)
    return out


def video_lens(file: Path) -> FootageLens | None:
    """The 35 mm equivalent in a movie's QuickTime metadata keys."""
    moov = _moov(Path(file))
    keys = quicktime_keys(moov) if moov else {}
    for key in QUICKTIME_KEYS:
        try:
            value = float(keys.get(key))
        except (TypeError, ValueError):
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
