"""Footage limits, the warning class and the message helpers every footage module shares."""

from __future__ import annotations

from ...contracts.errors import FootageError

DEFAULT_MAX_SIDE = 1024  # longer side of the frames handed to the pipeline, in pixels
MASK_THRESHOLD = 0.5  # mask value above which a pixel belongs to the object
MIN_OBJECT_SHARE = 0.001  # object pixels below this share of the frame: the object is not visible
FULL_FRAME_SHARE = 0.98  # object pixels above this share: the object fills the frame (or the mask is inverted)
MIN_VISIBLE_SHARE = 0.5  # at least this share of the chosen frames must show the object
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")
_IMAGES_EXTRA = "reading image files needs Pillow: pip install blender_stchain[images]"
_VIDEO_EXTRA = "reading video files needs PyAV: pip install blender_stchain[video]"


class FootageWarning(UserWarning):
    """A problem that leaves the footage usable; the message names the frames."""

def import_pil():
    try:
        from PIL import Image
    except ImportError:
        raise FootageError(_IMAGES_EXTRA) from None
    return Image


def import_av():
    try:
        import av
    except ImportError:
        raise FootageError(_VIDEO_EXTRA) from None
    return av


def short_error(e: Exception) -> str:
    """The reason without the path (FFmpeg errors repeat it)."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0][:160]


def size_text(size) -> str:
    return f"{size[0]}x{size[1]}"


def frames_text(numbers) -> str:
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
