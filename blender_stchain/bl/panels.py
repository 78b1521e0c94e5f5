"""Sidebar panels (3D View and Movie Clip editor, tab "4D Mesh") and the menu F3 search finds."""

import textwrap

import bpy

from ..contracts.masks import mask_source
from . import ops, prefs


def draw_job(layout, context):
    props = context.scene.stchain
    status = context.window_manager.stchain_status
    col = layout.column()
    col.prop(props, "source")
    col.prop(props, {"CLIP": "clip", "SEQUENCE": "directory", "FILE": "filepath"}[props.source])
    col.prop(props, "use_frame_range")
    if props.use_frame_range:
        row = col.row(align=True)
        row.prop(props, "frame_first")
        row.prop(props, "frame_last")
    col.prop(props, "anchor_frame")
    col.prop(props, "mask")
    if mask_source(props.mask).needs_mask_datablock:
        col.prop(props, "mask_datablock")
    if props.mask == "SEGMENT":
        col.prop(props, "segment_model")
        col.prop(props, "mask_datablock", text="Box from Mask")
        col.operator("stchain.preview_masks", icon="MOD_MASK")
    if props.source == "CLIP":
        col.prop(props, "use_clip_camera")
    col.prop(props, "method")
    col.prop(props, "preset")
    col.prop(props, "write_mode")
    col.separator()
    if status.running:
        col.progress(factor=status.progress, type="BAR", text=status.message or status.stage)
        col.operator(ops.STCHAIN_OT_cancel.bl_idname, icon="CANCEL")
    else:
        col.label(text=prefs.job_runtime(context), icon="SYSTEM")  # before it starts: where it will run
        col.operator(ops.STCHAIN_OT_generate.bl_idname, icon="MESH_MONKEY")
        if status.message:
            col.label(text=status.message)
        if status.camera:
            col.label(text=status.camera, icon="CAMERA_DATA")
        draw_last_job(col, status)
        col.operator(ops.STCHAIN_OT_apply_result.bl_idname, icon="FILE_REFRESH")
        col.operator(ops.STCHAIN_OT_export.bl_idname, icon="EXPORT")


def warning_lines(warnings: list[str], width: int = 44) -> list[tuple[str, str]]:
    """(text, icon) label lines of the warnings, wrapped (labels do not wrap); a default camera first."""
    ordered = sorted(warnings, key=lambda w: not w.startswith(ops.CAMERA_NOT_ESTIMATED))
    return [(line, ("ERROR" if w.startswith(ops.CAMERA_NOT_ESTIMATED) else "DOT") if i == 0 else "BLANK1")
            for w in ordered for i, line in enumerate(textwrap.wrap(w, width))]


def draw_last_job(layout, status):
    """The last job's mask source and every warning it left (a default camera first), kept until the
    next run: a camera that could not be estimated must not go unnoticed."""
    if status.mask_source:
        layout.label(text=f"Mask source: {status.mask_source}", icon="MOD_MASK")
    warnings = [w.text for w in status.warnings]
    if warnings:
        box = layout.box()
        box.label(text="Last job's warnings")
        for text, icon in warning_lines(warnings):
            box.label(text=text, icon=icon)


class _JobPanel:
    """The same job panel in every editor's sidebar that has one."""

    bl_label = "4D Mesh"
    bl_region_type = "UI"
    bl_category = "4D Mesh"

    def draw(self, context):
        draw_job(self.layout, context)


class STCHAIN_PT_view3d(_JobPanel, bpy.types.Panel):
    bl_idname = "STCHAIN_PT_view3d"
    bl_space_type = "VIEW_3D"


class STCHAIN_PT_clip(_JobPanel, bpy.types.Panel):
    bl_idname = "STCHAIN_PT_clip"
    bl_space_type = "CLIP_EDITOR"


class STCHAIN_MT_menu(bpy.types.Menu):
    bl_label = "4D Mesh"
    bl_idname = "STCHAIN_MT_menu"

    def draw(self, context):
        for op in (ops.STCHAIN_OT_generate, ops.STCHAIN_OT_cancel, ops.STCHAIN_OT_apply_result, ops.STCHAIN_OT_free_gpu,
                   ops.STCHAIN_OT_export):
            self.layout.operator(op.bl_idname)
        self.layout.operator("stchain.preview_masks")


def menu_entry(self, context):
    self.layout.menu(STCHAIN_MT_menu.bl_idname)


MENUS = ("VIEW3D_MT_object", "CLIP_MT_clip")
CLASSES = (STCHAIN_PT_view3d, STCHAIN_PT_clip, STCHAIN_MT_menu)
