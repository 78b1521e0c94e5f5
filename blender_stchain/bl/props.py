"""Scene settings of a job (saved with the .blend) and the live job status (window manager)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..contracts.masks import blender_enum_items
from ..contracts.prompts import SEGMENT_MODELS

SOURCES = [
    ("CLIP", "Movie Clip", "Use a Movie Clip loaded in Blender"),
    ("SEQUENCE", "Image Sequence", "Use a folder of images, one per frame (RGBA PNGs carry their own mask)"),
    ("FILE", "Video File", "Use a video file, decoded by Blender"),
]
MASKS = blender_enum_items()  # contracts/masks.py: one table for the panel, headless and export
METHODS = [
    ("chain", "Attention Chain", "Fast: a few denoiser steps, correspondences from attention chains"),
    ("actionmesh", "ActionMesh", "Reference pipeline: full stage-I schedule plus the stage-II autoencoder (slow)"),
]
PRESETS = [
    ("fast", "Fast", "Fewer steps and a lighter mesh"),
    ("balanced", "Balanced", "Default quality and speed"),
    ("quality", "Quality", "More steps and a denser mesh (slower)"),
]
WRITE_MODES = [
    ("auto", "Automatic", "Shape keys, or a point cache when the animation is large"),
    ("shape_keys", "Shape Keys", "One shape key per frame (editable, stored in the .blend)"),
    ("pc2", "Point Cache", "A PC2 file next to the .blend plus a Mesh Cache modifier (long clips)"),
]


SEGMENT_MODELS_ITEMS = [  # static items: a callback enum crashes bpy 4.2 at interpreter exit
    (m, m.removeprefix("sam2.1-hiera-").title(), f"SAM 2.1 Hiera {m.removeprefix('sam2.1-hiera-')}")
    for m in SEGMENT_MODELS
]


class STCHAIN_PG_job(bpy.types.PropertyGroup):
    source: EnumProperty(name="Source", items=SOURCES, default="CLIP", description="Where the footage comes from")
    clip: PointerProperty(name="Movie Clip", type=bpy.types.MovieClip, description="Footage as a Movie Clip")
    directory: StringProperty(name="Images", subtype="DIR_PATH", description="Folder of footage images")
    filepath: StringProperty(name="Video", subtype="FILE_PATH", description="Video file to decode")
    use_frame_range: BoolProperty(name="Frame Range", description="Use only part of the footage")
    frame_first: IntProperty(name="First", min=1, default=1, description="First footage frame (1-based)")
    frame_last: IntProperty(name="Last", min=1, default=16, description="Last footage frame (inclusive)")
    anchor_frame: IntProperty(name="Anchor Frame", min=0, default=0,
                              description="Footage frame whose shape becomes the mesh (0 = the frame with the largest mask)")
    mask: EnumProperty(name="Mask", items=MASKS, default="ALPHA", description="How the object is separated from the background")
    mask_datablock: PointerProperty(name="Mask Datablock", type=bpy.types.Mask, description="The Mask that outlines the object")
    segment_model: EnumProperty(name="Segmentation Model", items=SEGMENT_MODELS_ITEMS,
                                description="SAM 2.1 size for Segment Object (larger: better masks, slower)")
    method: EnumProperty(name="Method", items=METHODS, default="chain", description="Generation method")
    preset: EnumProperty(name="Preset", items=PRESETS, default="balanced", description="Speed / quality trade-off")
    write_mode: EnumProperty(name="Animation", items=WRITE_MODES, default="auto", description="How the animation is stored")
    use_clip_camera: BoolProperty(name="Use Clip's Camera", default=False,
                                  description="Fix the focal length to the Movie Clip's camera (Tracking > Camera: "
                                              "focal length and sensor width) instead of solving it")


class STCHAIN_PG_line(bpy.types.PropertyGroup):
    text: StringProperty(default="")


class STCHAIN_PG_status(bpy.types.PropertyGroup):
    """The live job and the last job's outcome. ``warnings``: what the last job warned about (the job's
    own warnings, camera status, ...); append with ``add_warning``, the panel draws them all."""

    running: BoolProperty(default=False)
    warnings: bpy.props.CollectionProperty(type=STCHAIN_PG_line)
    mask_source: StringProperty(name="Mask Source", default="", description="Mask source of the last job")
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0, default=0.0)
    stage: StringProperty(default="")
    message: StringProperty(default="")
    result: StringProperty(name="Last Result", subtype="FILE_PATH", default="")
    camera: StringProperty(name="Camera", default="", description="The last camera's focal length and its 95% interval")


CLASSES = (STCHAIN_PG_job, STCHAIN_PG_line, STCHAIN_PG_status)


def add_warning(status, text: str) -> None:
    """Append one line to the last job's warnings (no duplicates)."""
    if text and all(w.text != text for w in status.warnings):
        status.warnings.add().text = text


def clear_warnings(status) -> None:
    status.warnings.clear()


def register_props():
    bpy.types.Scene.stchain = PointerProperty(type=STCHAIN_PG_job)
    bpy.types.WindowManager.stchain_status = PointerProperty(type=STCHAIN_PG_status)


def unregister_props():
    del bpy.types.WindowManager.stchain_status
    del bpy.types.Scene.stchain
