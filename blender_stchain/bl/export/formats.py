"""Blender's own exporters with the settings that keep a result's animation (docs/exports.md).

- Alembic: the evaluated mesh at every frame of the scene range (shape keys and the Mesh Cache
  modifier alike: the exporter evaluates each frame and writes it before the next), and the camera
  with its focal length, sensor and lens shift. No normals (Alembic and USD): the result's faces
  give them, and per-frame normals would make the file several times larger.
- USD (.usd/.usdc/.usda): the same evaluated mesh as time samples of its points (blend shapes off,
  so a point-cached mesh exports too), the camera with its aperture and offsets.
- glTF (.glb/.gltf): shape keys become morph targets whose weights are sampled once per frame, and
  the camera's and the mesh's actions are exported as one glTF animation: Blender's importer then
  assigns both (with one animation per action it activates only the first). glTF has no lens shift
  and no vertex cache: a shifted principal point is dropped with a warning and a point-cached mesh
  is refused (the exporter would write it still).

Every file is written into a temporary folder beside the target under its final name (a .gltf
names its .bin after itself) and moved into place when complete: a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import bpy

from ...contracts.errors import StchainError
from .paths import check_target, format_of

SHIFT_TOLERANCE = 1e-6


def _alembic(scene, path: Path) -> None:
    bpy.ops.wm.alembic_export(filepath=str(path), start=scene.frame_start, end=scene.frame_end, selected=True,
                              flatten=False, uvs=True, normals=False, face_sets=False, export_custom_properties=False,
                              evaluation_mode="RENDER", as_background_job=False, init_scene_frame_range=False)


def _usd(scene, path: Path) -> None:
    bpy.ops.wm.usd_export(filepath=str(path), selected_objects_only=True, export_animation=True,
                          export_shapekeys=False, export_armatures=False, export_materials=False, export_normals=False,
                          export_cameras=True, export_meshes=True, export_lights=False, export_custom_properties=False,
                          evaluation_mode="RENDER")


def _gltf(scene, path: Path) -> None:
    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB" if path.suffix.lower() == ".glb"
                              else "GLTF_SEPARATE", use_selection=True, export_cameras=True, export_animations=True,
                              export_animation_mode="ACTIVE_ACTIONS", export_frame_range=True,
                              export_force_sampling=True, export_morph=True, export_morph_normal=False,
                              export_morph_animation=True, export_apply=False, export_materials="NONE",
                              export_extras=False)


_EXPORTERS = {"alembic": _alembic, "usd": _usd, "gltf": _gltf}


def result_objects(scene) -> tuple:
    """The mesh and camera object of the result in ``scene`` (the scene writer's roles)."""
    from ..scene_writer import ROLE, owned_ids

    objects = [i for i in owned_ids(scene) if isinstance(i, bpy.types.Object)]
    mesh = next((o for o in objects if o.type == "MESH" and o.get(ROLE) == "mesh"), None)
    camera = next((o for o in objects if o.type == "CAMERA" and o.get(ROLE) == "camera"), None)
    if mesh is None or camera is None:
        raise StchainError("this scene holds no 4D Mesh result to export; generate one first")
    return mesh, camera


def export_objects(scene, objects, path, warn=print) -> Path:
    """Write ``objects`` (a result's mesh and camera) of the current scene to ``path``; returns it."""
    path = check_target(path)
    kind = format_of(path)
    if kind == "gltf":
        _gltf_checks(objects, warn)
    with _selected(scene, objects):
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".stchain-export-", dir=path.parent))
        except OSError as e:
            why = f"cannot write {path.name} in {path.parent}: {e.strerror}; choose another --out"
            raise StchainError(why) from None
        try:
            _EXPORTERS[kind](scene, tmp / path.name)
            produced = sorted(tmp.iterdir(), key=lambda p: p.name == path.name)  # the named file last
            if not produced or produced[-1].name != path.name:
                raise StchainError(f"Blender's {kind} exporter wrote no {path.name}")
            for p in produced:
                os.replace(p, path.parent / p.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _gltf_checks(objects, warn) -> None:
    for ob in objects:
        if ob.type == "MESH" and ob.data.shape_keys is None and any(m.type == "MESH_CACHE" for m in ob.modifiers):
            raise StchainError("glTF keeps a mesh's animation only as shape keys and this result is a point cache: "
                               "export .abc or .usdc, or `python -m blender_stchain export RESULT --out X.glb`")
        if ob.type == "CAMERA" and max(abs(ob.data.shift_x), abs(ob.data.shift_y)) > SHIFT_TOLERANCE:
            warn(f"glTF cameras have no lens shift: the principal point's offset from the image centre (shift "
                 f"{ob.data.shift_x:.4f}, {ob.data.shift_y:.4f}) is dropped; .abc and .usd keep it")


@contextmanager
def _selected(scene, objects):
    """Exactly ``objects`` selected (the exporters' selection-only switch), restored afterwards."""
    if bpy.context.scene != scene:
        raise StchainError("export runs on the current scene only")
    layer = bpy.context.view_layer
    before = {ob.name: ob.select_get() for ob in layer.objects}
    active = layer.objects.active
    try:
        for ob in layer.objects:
            ob.select_set(ob in objects)
        layer.objects.active = objects[0]
        yield
    finally:
        for ob in layer.objects:
            if ob.name in before:
                ob.select_set(before[ob.name])
        layer.objects.active = active
