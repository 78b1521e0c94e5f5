"""*Export 4D Mesh*: the scene's result (mesh and camera, as they are now) to Alembic, USD or glTF with the
settings that keep the animation (``formats``); the user's other objects and selection are untouched."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from ...contracts.errors import StchainError
from .formats import export_objects, result_objects

FILE_FORMATS = [
    ("abc", "Alembic (.abc)", "Mesh at every frame and the camera; Houdini, Maya, Nuke"),
    ("usdc", "USD (.usdc)", "Mesh points at every frame and the camera; USD pipelines, Omniverse, Unreal"),
    ("usda", "USD text (.usda)", "As .usdc, human-readable (larger)"),
    ("glb", "glTF binary (.glb)", "Morph targets sampled every frame and the camera; the web, game engines"),
    ("gltf", "glTF (.gltf + .bin)", "As .glb, JSON plus a binary buffer file"),
]


class STCHAIN_OT_export(bpy.types.Operator):
    """Export the 4D mesh and its camera as Alembic, USD or glTF, keeping the animation"""

    bl_idname = "stchain.export"
    bl_label = "Export 4D Mesh"

    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Where to write the export")
    file_format: EnumProperty(name="Format", items=FILE_FORMATS, default="abc",
                              description="The extension of the file name picks the format when it has one")
    filter_glob: StringProperty(default="*.abc;*.usd;*.usdc;*.usda;*.glb;*.gltf", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        try:
            result_objects(context.scene)
        except StchainError:
            return False
        return True

    def invoke(self, context, event):
        if not self.filepath:
            folder = Path(bpy.path.abspath("//")) if bpy.data.filepath else Path.home()
            name = bpy.path.clean_name(result_objects(context.scene)[0].name)
            self.filepath = str(folder / f"{name}.{self.file_format}")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if not path.suffix:
            path = path.with_suffix("." + self.file_format)
        try:
            written = export_objects(context.scene, result_objects(context.scene), path,
                                     warn=lambda m: self.report({"WARNING"}, m))
        except (StchainError, RuntimeError, OSError) as e:
            self.report({"ERROR"}, f"Export failed: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {written}")
        return {"FINISHED"}
