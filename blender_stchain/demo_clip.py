"""The demo's own clip, so a clone alone runs the demo: a bending, turning creature rendered with the
bpy module (Cycles on the CPU) into RGBA PNGs, the format the pipeline reads with the alpha as the mask.

Made by this code (no third-party footage, so no licence to carry); about 20-40 s once, then reused.
"""

from __future__ import annotations

import math
from pathlib import Path

FRAMES = 16
SIZE = 256


def ensure_clip(folder: Path, log=print) -> Path:
    """``folder`` with FRAMES RGBA PNGs (rendered now unless they are already there)."""
    folder = Path(folder)
    if len(list(folder.glob("*.png"))) >= FRAMES:
        return folder
    try:
        import bpy
    except ImportError:
        from .contracts.errors import StchainError

        raise StchainError("the demo clip is rendered with the bpy module: `pip install bpy==5.0.1` "
                           "(scripts/setup.sh does), or pass --footage PATH") from None
    log(f"rendering the demo clip ({FRAMES} frames, {SIZE}x{SIZE}) into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    _creature(bpy, scene)
    _camera_and_light(bpy, scene)
    _render_settings(scene, folder)
    from .contracts.terminal import quiet_stdout

    with quiet_stdout():  # Blender prints a line per rendered frame
        bpy.ops.render.render(animation=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return folder


def _creature(bpy, scene) -> None:
    """An elongated body that bends back and forth and turns: non-rigid motion with a clear silhouette."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=32, radius=1.0)
    body = bpy.context.active_object
    body.name = "demo creature"
    body.scale = (0.45, 0.35, 1.3)
    bpy.ops.object.transform_apply(scale=True)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=32, ring_count=16, radius=0.42, location=(0.0, -0.15, 1.25))
    head = bpy.context.active_object
    head.select_set(True)
    body.select_set(True)
    bpy.context.view_layer.objects.active = body
    bpy.ops.object.join()
    bpy.ops.object.shade_smooth()
    bend = body.modifiers.new("bend", "SIMPLE_DEFORM")
    bend.deform_method, bend.deform_axis = "BEND", "Y"  # bends sideways, across the view
    for frame, angle, turn in ((1, 0.0, -20.0), (6, 80.0, 5.0), (11, -70.0, 30.0), (FRAMES, 20.0, 45.0)):
        bend.angle = math.radians(angle)
        bend.keyframe_insert("angle", frame=frame)
        body.rotation_euler = (0.0, 0.0, math.radians(turn))
        body.keyframe_insert("rotation_euler", frame=frame)
    mat = bpy.data.materials.new("demo skin")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (0.55, 0.38, 0.22, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.7
    body.data.materials.append(mat)


def _camera_and_light(bpy, scene) -> None:
    cam = bpy.data.objects.new("demo camera", bpy.data.cameras.new("demo camera"))
    cam.location = (0.0, -5.0, 0.5)
    cam.rotation_euler = (math.radians(87.0), 0.0, 0.0)
    cam.data.lens = 50.0
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("demo sun", bpy.data.lights.new("demo sun", "SUN"))
    sun.data.energy = 4.0
    sun.rotation_euler = (math.radians(40.0), math.radians(20.0), math.radians(-30.0))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("demo world")
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world


def _render_settings(scene, folder: Path) -> None:
    scene.frame_start, scene.frame_end = 1, FRAMES
    r = scene.render
    import addon_utils  # after bpy: Cycles is an add-on, off in a factory session of the bpy module

    addon_utils.enable("cycles", default_set=False)
    r.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.cycles.use_denoising = False
    r.resolution_x = r.resolution_y = SIZE
    r.resolution_percentage = 100
    r.film_transparent = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.filepath = str(folder / "####")
