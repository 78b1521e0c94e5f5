"""Footage and masks outside Blender: lazy, streaming readers with up-front validation, and the
shared crop that turns footage frames into the backbone's square inputs (``preprocess``).

``open_footage`` accepts a folder of images (RGBA alpha becomes the mask), a video file (PyAV), or a
*frames folder* written by Blender (``contracts.frames``). Frames are decoded one at a time when
read, never the whole clip.

Masks are read as floats in [0, 1] (8-bit /255, 16-bit /65535, alpha used when a mask image has a
non-opaque alpha); a pixel belongs to the object where the value is above ``MASK_THRESHOLD``. They
come from one ``MaskSource`` (``masks.py``: a mask folder, the footage alpha, or none); without
masks the whole frame, background included, goes to the model.
"""

from .common import DEFAULT_MAX_SIDE, MASK_THRESHOLD, FootageWarning
from .reader import Footage, open_footage

__all__ = ["DEFAULT_MAX_SIDE", "MASK_THRESHOLD", "Footage", "FootageWarning", "open_footage"]
