"""The only code that writes ``bpy.data``: a Result becomes a mesh, a camera and scene settings.

Everything is built in a fresh collection that is not linked to any scene; only when every part
exists are the previous result's own objects removed and the new collection linked (all or
nothing: a failure removes what was built and the scene is as it was). Main thread only.

Layout written:
- mesh object: Basis plus one shape key per frame (``frame_0001``...) whose value F-curves are
  CONSTANT 0/1 steps, so exactly one key is active at every scene frame; above a size threshold a
  PC2 file plus a Mesh Cache modifier instead. Mesh coordinates are the result's object-space
  vertices; the object's matrix carries the object-space -> Blender-world rotation.
- camera object: per-frame location/rotation keys, lens, sensor fit and shift, the footage as its
  background (a Movie Clip), scene.camera.
- scene: frame range = the result's frames (+ offset), fps and resolution of the footage.
- 2D tracks: tracks ``stchain_NNNN`` with one marker per frame, muted where hidden, on a Movie
  Clip of our own (a copy of the user's clip when one is the source: the API cannot delete tracks).
Every ID we create carries the custom property ``stchain_role``; re-runs remove only those.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..contracts.blender_camera import OBJECT_TO_BLENDER, BlenderCamera, blender_camera
from . import animcompat
from .pointcache import write_pc2

ROLE = "stchain_role"
TRACK_PREFIX = "stchain_"
_DATA = {"Object": "objects", "Mesh": "meshes", "Camera": "cameras", "Action": "actions",
         "MovieClip": "movieclips", "Collection": "collections", "Key": "shape_keys", "Material": "materials"}
MESH_COLOUR = (0.85, 0.45, 0.12, 1.0)  # a warm orange: reads against most footage in solid and rendered views


@dataclass
class WriteOptions:
    name: str = "4D Mesh"
    mode: str = "auto"  # auto | shape_keys | pc2
    pc2_threshold_mb: float = 400.0  # auto mode: PC2 when T * Nv * 12 bytes exceeds this
    cache_dir: str | None = None  # PC2 folder; None = next to the saved .blend
    frame_offset: int = 0  # scene frame = footage frame number + offset
    fps: float | None = None  # footage fps; None keeps the scene's
    footage: str | None = None  # video file or first image of a sequence for the background
    clip: str | None = None  # name of an existing Movie Clip to use instead of ``footage``
    tracks: bool = True
    max_tracks: int = 256
    metadata: dict = field(default_factory=dict)


def camera_data(result) -> BlenderCamera:
    """The result's OpenCV camera as Blender values (contracts.blender_camera: one documented conversion)."""
    return blender_camera(result.K.astype(np.float64), result.world_to_camera.astype(np.float64),
                          tuple(int(x) for x in result.image_size))


def object_matrix() -> np.ndarray:
    """The backbone's object space (y up) -> Blender world (z up): a proper rotation, applied to the
    mesh object here and to the camera by ``blender_camera``, so the two stay lined up."""
    m = np.eye(4)
    m[:3, :3] = OBJECT_TO_BLENDER
    return m


def apply(result, scene, options: WriteOptions | None = None, camera: BlenderCamera | None = None) -> dict:
    """Write ``result`` into ``scene``, replacing only a previous result's own objects."""
    options = options or WriteOptions()
    camera = camera or camera_data(result)
    frames = result.frame_numbers.astype(np.int64) + options.frame_offset
    created: list = []
    try:
        coll = _own(bpy.data.collections.new(options.name + ".new"), "collection", created)
        mesh_ob = _mesh_object(result, frames, options, coll, object_matrix(), created)
        _material(mesh_ob, options.name, created)
        clip = _clip(options, created)
        if clip is not None:
            _tracking_camera(clip, result)
        cam_ob = _camera_object(camera, frames, options.name, coll, clip, created)
        if clip is not None and options.tracks and result.tracks_2d is not None:
            _tracks(clip, result, frames, options.max_tracks)
        for ob in (mesh_ob, cam_ob):
            ob["stchain"] = json.dumps(options.metadata, sort_keys=True, default=str)
    except BaseException:
        _remove(created)
        raise
    remove_previous(scene)
    coll.name = options.name
    _settle_names(created + ([mesh_ob.data.shape_keys] if mesh_ob.data.shape_keys else []))
    scene.collection.children.link(coll)
    _scene_settings(scene, camera, frames, options.fps)
    scene.camera = cam_ob
    return {"mesh": mesh_ob.name, "camera": cam_ob.name, "collection": coll.name}


def remove_previous(scene) -> None:
    """Remove the IDs a previous apply created, nothing else."""
    _remove(owned_ids(scene))


def owned_ids(scene) -> list:
    """The IDs of the current result in ``scene`` (what ``remove_previous`` would delete)."""
    out = []
    for coll in scene.collection.children:
        if coll.get(ROLE) == "collection":
            out += _owned_under(coll)
    return out


def _owned_under(coll) -> list:
    ids = [coll]
    for ob in coll.objects:
        ids.append(ob)
        if ob.get(ROLE) and ob.data is not None:
            ids.append(ob.data)
            ids += [m for m in getattr(ob.data, "materials", ()) if m is not None and m.get(ROLE)]
        for holder in (ob, getattr(ob.data, "shape_keys", None)):
            ad = holder.animation_data if holder is not None else None
            if ad is not None and ad.action is not None and ad.action.get(ROLE):
                ids.append(ad.action)
        if ob.type == "CAMERA":
            ids += [bg.clip for bg in ob.data.background_images if bg.clip is not None and bg.clip.get(ROLE)]
    return ids


def _settle_names(ids) -> None:
    """Drop the ``.001`` suffixes the new IDs got while the previous result still existed."""
    for id_block in ids:
        base = re.sub(r"\.\d{3,}$", "", id_block.name)
        if base != id_block.name and base not in getattr(bpy.data, _DATA[type(id_block).__name__]):
            id_block.name = base


def _own(id_block, role: str, created: list):
    id_block[ROLE] = role
    created.append(id_block)
    return id_block


def _remove(ids: list) -> None:
    done = set()
    for id_block in reversed(ids):
        try:
            key = (type(id_block).__name__, id_block.name)
        except ReferenceError:  # already freed with its owner
            continue
        if key not in done:
            done.add(key)
            getattr(bpy.data, _DATA[type(id_block).__name__]).remove(id_block)


def _mesh_object(result, frames, options, coll, object_matrix, created):
    T, Nv, _ = result.vertices.shape
    me = _own(bpy.data.meshes.new(options.name), "mesh", created)
    faces = result.faces
    me.vertices.add(Nv)
    me.vertices.foreach_set("co", result.vertices[0].ravel())
    me.loops.add(faces.size)
    me.loops.foreach_set("vertex_index", faces.ravel())
    me.polygons.add(len(faces))
    me.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    me.update()
    ob = _own(bpy.data.objects.new(options.name, me), "mesh", created)
    coll.objects.link(ob)
    ob.matrix_world = Matrix(np.asarray(object_matrix, np.float64).tolist())
    ob["stchain_frames"] = [int(frames[0]), int(frames[-1])]
    if _use_pc2(T, Nv, options):
        _point_cache(ob, result, frames, options)
    else:
        _shape_keys(ob, result.vertices, frames, options.name, created)
    return ob


def _material(ob, name, created) -> None:
    """A plain opaque material (and the same viewport colour) so the mesh reads against the footage."""
    mat = _own(bpy.data.materials.new(name + " material"), "material", created)
    mat.diffuse_color = MESH_COLOUR
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # 5.0+ always uses nodes (the flag is deprecated there)
    bsdf = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None) if mat.node_tree else None
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = MESH_COLOUR
        bsdf.inputs["Roughness"].default_value = 0.6
    ob.data.materials.append(mat)


def _tracking_camera(clip, result) -> None:
    """The clip's tracking camera = the solved one (focal and principal point in footage pixels), so
    Blender's own tracking tools see the same camera as the scene's."""
    K = np.asarray(result.K, np.float64)
    W, H = (float(x) for x in result.image_size)
    tc = clip.tracking.camera
    tc.sensor_width = 36.0
    tc.focal_length = float(K[0, 0]) * tc.sensor_width / W  # mm on a 36 mm sensor spanning the width
    tc.pixel_aspect = float(K[1, 1] / K[0, 0]) if K[0, 0] else 1.0
    principal = (float(K[0, 2]), H - float(K[1, 2]))  # Blender's clip origin is the bottom-left corner
    if hasattr(tc, "principal_point_pixels"):
        tc.principal_point_pixels = principal
    else:
        tc.principal = principal


def _use_pc2(T, Nv, options) -> bool:
    if options.mode not in ("auto", "shape_keys", "pc2"):
        raise ValueError(f"unknown write mode {options.mode!r}")
    if options.mode != "auto":
        return options.mode == "pc2"
    return T * Nv * 12 > options.pc2_threshold_mb * 1e6


def _shape_keys(ob, vertices, frames, name, created):
    ob.shape_key_add(name="Basis", from_mix=False)
    names = [f"frame_{int(f):04d}" for f in frames]
    for key_name, v in zip(names, vertices):
        kb = ob.shape_key_add(name=key_name, from_mix=False)
        kb.data.foreach_set("co", v.ravel())
    key = ob.data.shape_keys
    action = _own(bpy.data.actions.new(name + " keys"), "action", created)
    fcurves = animcompat.fcurves_for(key, action)
    last = len(frames) - 1
    for t, (key_name, f) in enumerate(zip(names, frames)):
        pts = [(f - 1, 0.0)] if t > 0 else []
        pts.append((f, 1.0))
        if t < last:
            pts.append((f + 1, 0.0))
        fr, val = zip(*pts)
        animcompat.write_fcurve(fcurves, f'key_blocks["{key_name}"].value', fr, val)


def _point_cache(ob, result, frames, options):
    folder = options.cache_dir or os.path.dirname(bpy.data.filepath)
    if not folder:
        raise ValueError("a point cache needs a folder: save the .blend first or set a cache folder")
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = write_pc2(Path(folder) / f"{bpy.path.clean_name(ob.name)}_{uuid.uuid4().hex[:8]}.pc2", result.vertices)
    mod = ob.modifiers.new("4D Mesh cache", "MESH_CACHE")
    mod.cache_format = "PC2"
    mod.filepath = bpy.path.relpath(str(path)) if bpy.data.filepath else str(path)
    mod.time_mode = "FRAME"
    mod.play_mode = "SCENE"
    mod.frame_start = float(frames[0])
    ob["stchain_pc2"] = str(path)


def _clip(options, created):
    """Our own clip (tracks cannot be removed through the API, so user clips are never touched)."""
    path = options.footage
    if options.clip:
        user_clip = bpy.data.movieclips.get(options.clip)
        if user_clip is None:
            raise ValueError(f"Movie Clip {options.clip!r} does not exist")
        path = bpy.path.abspath(user_clip.filepath)
    if not path:
        return None
    clip = _own(bpy.data.movieclips.load(path, check_existing=False), "clip", created)
    clip.frame_start = 1 + options.frame_offset
    return clip


def _camera_object(cam: BlenderCamera, frames, name, coll, clip, created):
    data = _own(bpy.data.cameras.new(name + " camera"), "camera", created)
    data.sensor_fit = cam.sensor_fit
    data.sensor_width = cam.sensor_width
    data.sensor_height = cam.sensor_height
    data.lens = cam.lens
    data.shift_x = cam.shift_x
    data.shift_y = cam.shift_y
    if clip is not None:
        data.show_background_images = True
        bg = data.background_images.new()
        bg.source = "MOVIE_CLIP"
        bg.clip = clip
        bg.alpha = 1.0
    ob = _own(bpy.data.objects.new(name + " camera", data), "camera", created)
    coll.objects.link(ob)
    world = np.asarray(cam.matrix_world, np.float64)
    loc = np.empty((len(frames), 3))
    rot = np.empty((len(frames), 3))
    prev = None
    for t, m in enumerate(world):
        mat = Matrix(m.tolist())
        loc[t] = mat.to_translation()
        prev = mat.to_euler("XYZ", prev) if prev is not None else mat.to_euler("XYZ")
        rot[t] = prev
    ob.matrix_world = Matrix(world[0].tolist())
    action = _own(bpy.data.actions.new(name + " camera motion"), "action", created)
    fcurves = animcompat.fcurves_for(ob, action)
    for path, values in (("location", loc), ("rotation_euler", rot)):
        for i in range(3):
            animcompat.write_fcurve(fcurves, path, frames, values[:, i], index=i, interpolation=animcompat.LINEAR)
    return ob


def _tracks(clip, result, frames, max_tracks):
    W, H = (float(x) for x in result.image_size)
    pts = result.tracks_2d[:, :max_tracks]
    vis = result.track_visible[:, :max_tracks].astype(bool)
    co = np.stack([pts[..., 0] / W, 1.0 - pts[..., 1] / H], -1)
    for i in range(pts.shape[1]):
        track = clip.tracking.tracks.new(name=f"{TRACK_PREFIX}{i:04d}", frame=int(frames[0]))
        markers = track.markers
        for t, f in enumerate(frames):
            marker = markers.find_frame(int(f)) or markers.insert_frame(int(f), co=co[t, i].tolist())
            marker.co = co[t, i].tolist()
            marker.mute = not vis[t, i]


def _scene_settings(scene, cam: BlenderCamera, frames, fps):
    scene.frame_start = int(frames[0])
    scene.frame_end = int(frames[-1])
    r = scene.render
    r.resolution_x, r.resolution_y = cam.resolution_x, cam.resolution_y
    r.resolution_percentage = 100
    r.pixel_aspect_x, r.pixel_aspect_y = cam.pixel_aspect_x, cam.pixel_aspect_y
    if fps:
        r.fps = max(1, round(fps))
        r.fps_base = r.fps / fps


