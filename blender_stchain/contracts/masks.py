"""The mask sources a user can choose in Blender and with ``--mask-source``: one table that the panel's
enum, the headless option and the frame export (``bl/footage.py``) all read, so a new source is one
line here plus its exporter class in ``bl/footage.py``.

Every source ends as the same thing for the engine: the 4th channel of the exported frames (or no
4th channel), or a folder of mask images given as ``masks``; the engine side of masks is
``engine/footage/masks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FootageError


@dataclass(frozen=True)
class MaskSourceInfo:
    name: str  # the --mask-source value and the export argument; Blender's enum id is name.upper()
    label: str
    description: str
    saved_as: int  # the number a .blend stores for this choice: fixed forever, never reused
    needs_mask_datablock: bool = False  # a Blender Mask must be chosen (panel field, --blender-mask)

    @property
    def blender_id(self) -> str:
        return self.name.upper()


MASK_SOURCES = (
    MaskSourceInfo("none", "None", "No mask: the whole frame, background included, goes to the model; only for "
                   "footage of the object alone on a plain white background", 0),
    MaskSourceInfo("alpha", "Footage Alpha", "The footage's alpha channel is the object mask", 1),
    MaskSourceInfo("mask", "Blender Mask", "A Mask datablock (drawn in the Movie Clip editor) rendered per frame", 2,
                   needs_mask_datablock=True),
    MaskSourceInfo("luma", "Luma Key", "Object = pixels brighter than a dark background", 3),
    MaskSourceInfo("chroma", "Chroma Key", "Object = pixels far from the border's background colour", 4),
)
MASK_SOURCE_NAMES = tuple(s.name for s in MASK_SOURCES)


def mask_source(name: str) -> MaskSourceInfo:
    """The source called ``name`` (``alpha``, or Blender's enum id ``ALPHA``)."""
    for s in MASK_SOURCES:
        if name in (s.name, s.blender_id):
            return s
    raise FootageError(f"mask source {name!r} is not one of {', '.join(MASK_SOURCE_NAMES)}")


def blender_enum_items() -> list[tuple[str, str, str, str, int]]:
    """EnumProperty items with fixed numbers, so adding or reordering sources never changes saved files."""
    return [(s.blender_id, s.label, s.description, "", s.saved_as) for s in MASK_SOURCES]
