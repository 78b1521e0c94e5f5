"""Round trips through Blender's own importers: a scene sampled at every frame (world-space vertices,
camera matrix, the camera frame's edge angles) and the worst differences between two samplings.

Vertices are compared as point sets (an importer may reorder or split them): the nearest neighbour
both ways, relative to the bounding-box diagonal. The field of view is the angle of each edge of the
camera frame (``Camera.view_frame`` at the scene's resolution: lens, sensor, fit and shift together).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

IMPORTERS = {
    ".abc": lambda p: bpy.ops.wm.alembic_import(filepath=str(p)),
    ".usd": lambda p: bpy.ops.wm.usd_import(filepath=str(p)),
    ".usdc": lambda p: bpy.ops.wm.usd_import(filepath=str(p)),
    ".usda": lambda p: bpy.ops.wm.usd_import(filepath=str(p)),
    ".glb": lambda p: bpy.ops.import_scene.gltf(filepath=str(p)),
    ".gltf": lambda p: bpy.ops.import_scene.gltf(filepath=str(p)),
}


@dataclass
class Frame:
    points: np.ndarray  # (N, 3) world-space vertices of every mesh object
    camera: np.ndarray  # (4, 4) scene camera's matrix_world
    edges_deg: np.ndarray  # (4, 2) angle of each camera-frame corner from the view axis, x and y


def sample(scene, frames, meshes=None) -> dict[int, Frame]:
    """The scene as it evaluates at each of ``frames`` (its mesh objects, or those named in ``meshes``)."""
    out = {}
    for f in frames:
        scene.frame_set(int(f))
        dg = bpy.context.evaluated_depsgraph_get()
        pts = []
        for ob in scene.objects:
            if ob.type != "MESH" or (meshes is not None and ob.name not in meshes):
                continue
            ev = ob.evaluated_get(dg)
            me = ev.to_mesh()
            co = np.empty(len(me.vertices) * 3, np.float64)
            me.vertices.foreach_get("co", co)
            M = np.array(ev.matrix_world)
            pts.append(co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3])
            ev.to_mesh_clear()
        cam = scene.camera
        corners = np.array([tuple(v) for v in cam.data.view_frame(scene=scene)])
        out[int(f)] = Frame(np.concatenate(pts), np.array(cam.matrix_world),
                            np.degrees(np.arctan2(corners[:, :2], -corners[:, 2:3])))
    return out


def imported(path, frames, fps: float, resolution) -> dict[int, Frame]:
    """A fresh empty scene at the clip's frame rate and resolution, ``path`` imported, then sampled."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps
    scene.render.resolution_x, scene.render.resolution_y = (int(x) for x in resolution)
    IMPORTERS[path.suffix.lower()](path)
    cameras = [ob for ob in scene.objects if ob.type == "CAMERA"]
    assert len(cameras) == 1, [ob.name for ob in scene.objects]
    scene.camera = cameras[0]
    return sample(scene, frames)


def nearest(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distance from each query to its nearest point (scipy when installed; the Blender-only test venvs
    have Blender's own k-d tree)."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        from mathutils.kdtree import KDTree

        tree = KDTree(len(points))
        for i, p in enumerate(points):
            tree.insert(p.tolist(), i)
        tree.balance()
        return np.array([tree.find(q.tolist())[2] for q in queries])
    return cKDTree(points).query(queries)[0]


@dataclass
class Worst:
    vertices: float  # nearest-neighbour distance / bbox diagonal
    camera: float  # max |matrix_world difference|
    fov_deg: float  # max camera-frame edge angle difference
    frames: int


def compare(ref: dict[int, Frame], got: dict[int, Frame]) -> Worst:
    assert sorted(ref) == sorted(got)
    v = c = a = 0.0
    for f, r in ref.items():
        g = got[f]
        diag = float(np.linalg.norm(np.ptp(r.points, axis=0)))
        d = max(nearest(g.points, r.points).max(), nearest(r.points, g.points).max())
        v = max(v, d / diag)
        c = max(c, float(np.abs(r.camera - g.camera).max()))
        a = max(a, float(np.abs(r.edges_deg - g.edges_deg).max()))
    return Worst(v, c, a, len(ref))
