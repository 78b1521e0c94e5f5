"""``eval make-bench OUT``: render the synthetic benchmark with Blender (PyPI bpy, CPU, no torch).

Per clip: RGBA frames (Workbench, transparent film; Cycles CPU when Workbench cannot start), the GT
mesh per frame, tracked GT surface points (ActionBench's GT form), the camera (OpenCV) and 2D tracks
of GT vertices with visibility from Blender's own ray casts against the posed mesh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import scenes
from ..bench import FRAMES_DIR, write_clip
from ..errors import EvalError
from ..metrics.sampling import tracked_points

@dataclass(frozen=True)
class BenchSpec:
    size: int = 512
    frames: tuple[int, ...] = (16, 32, 48)  # per clip, in the order of ``clip_list``
    clips: tuple[str, ...] = ("mushroom_static", "octopus_orbit", "capsule_twist")
    tracks: int = 256
    surface_points: int = 20_000
    seed: int = 0
    engine: str = "BLENDER_WORKBENCH"
    fovs: tuple[float, ...] = (35.0, 45.0, 50.0)  # horizontal field of view per clip (cycled); not the
    # pipeline's 40 degree default camera, so a fallback camera cannot score a perfect focal by chance


def clip_list(spec: BenchSpec, glb_dir: Path | None) -> list[scenes.Scene]:
    out = []
    for name, frames in zip(spec.clips, spec.frames):
        if name == "capsule_twist":
            out.append(scenes.bending_capsule(frames))
            continue
        mesh, _, camera = name.partition("_")
        path = Path(glb_dir or _glb_dir()) / f"{mesh}.npz"
        if not path.exists():
            raise EvalError(f"{path} not found; set STCHAIN_SHARED_DIR to the shared folder (data/animated_glb)")
        out.append(scenes.from_npz(path, name, camera or "static", frames))
    return out


def build(out, spec: BenchSpec = BenchSpec(), glb_dir=None, log=print) -> list[Path]:
    """Write every clip of ``spec`` under ``out``; returns the clip folders."""
    import bpy

    folders = []
    for i, scene_def in enumerate(clip_list(spec, glb_dir)):
        fov = spec.fovs[i % len(spec.fovs)]
        folders.append(_render_clip(bpy, Path(out) / scene_def.name, scene_def, spec, fov, log))
    return folders


def _glb_dir() -> Path:
    import os

    shared = os.environ.get("STCHAIN_SHARED_DIR")
    if not shared:
        raise EvalError("no animated meshes: give --meshes DIR (NAME.npz animated meshes) or set STCHAIN_SHARED_DIR "
                        "to a data folder holding data/animated_glb")
    return Path(shared) / "data" / "animated_glb"


def _render_clip(bpy, folder: Path, sd: scenes.Scene, spec: BenchSpec, fov: float, log) -> Path:
    V, F = sd.vertices, sd.faces
    T = len(V)
    centre = 0.5 * (V.reshape(-1, 3).max(0) + V.reshape(-1, 3).min(0))
    radius = float(np.linalg.norm(V.reshape(-1, 3) - centre, axis=1).max())
    K = scenes.intrinsics(spec.size, fov)
    distance = 1.25 * radius / np.tan(np.radians(fov / 2))  # the object fills ~80% of the view
    w2c = scenes.camera_path(sd.camera, T, centre, distance)
    scene, obj, cam = _setup(bpy, V[0], F, K, spec)
    rng = np.random.default_rng(spec.seed)
    track_ids = np.sort(rng.choice(V.shape[1], min(spec.tracks, V.shape[1]), replace=False))
    tracks = np.zeros((T, len(track_ids), 2))
    visible = np.zeros((T, len(track_ids)), bool)
    (folder / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    for t in range(T):
        obj.data.vertices.foreach_set("co", np.ascontiguousarray(V[t], np.float32).ravel())
        obj.data.update()
        cam.matrix_world = _matrix(scenes.blender_camera_matrix(w2c[t]))
        bpy.context.view_layer.update()
        tracks[t] = scenes.project(K, w2c[t], V[t, track_ids])
        visible[t] = _visible(bpy, scene, w2c[t], V[t, track_ids], tracks[t], spec.size)
        scene.render.filepath = str(folder / FRAMES_DIR / f"{t + 1:04d}.png")
        bpy.ops.render.render(write_still=True)
    surfaces = tracked_points(V, F, spec.surface_points, spec.seed)
    meta = {"source": sd.source, "camera": sd.camera, "frames": T, "size": spec.size, "fov_deg": fov,
            "engine": scene.render.engine, "notes": "world = Blender's (Z up); cameras OpenCV"}
    write_clip(folder, sd.name, V, F, surfaces, K, w2c, (spec.size, spec.size), track_ids, tracks, visible, meta)
    log(f"[make-bench] {sd.name}: {T} frames, {V.shape[1]} vertices, {sd.camera} camera, "
        f"{visible.mean():.0%} of tracks visible, {scene.render.engine}")
    return folder


def _setup(bpy, V0, F, K, spec: BenchSpec):
    """A fresh scene: the mesh, a camera with ``K``, transparent film, the render engine."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("bench_mesh")
    mesh.from_pydata(np.asarray(V0, np.float64).tolist(), [], np.asarray(F).tolist())
    mesh.update()
    obj = bpy.data.objects.new("bench_object", mesh)
    scene.collection.objects.link(obj)
    cam_data = bpy.data.cameras.new("bench_camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.lens = float(K[0, 0]) * 36.0 / spec.size
    cam_data.clip_start, cam_data.clip_end = 0.01, 1000.0
    cam = bpy.data.objects.new("bench_camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    r = scene.render
    r.resolution_x = r.resolution_y = spec.size
    r.resolution_percentage = 100
    r.film_transparent = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.engine = spec.engine
    if spec.engine == "BLENDER_WORKBENCH":
        shading = scene.display.shading
        shading.light, shading.color_type = "STUDIO", "SINGLE"
        shading.single_color = (0.8, 0.55, 0.3)
        shading.show_cavity = True
    else:
        scene.cycles.device, scene.cycles.samples = "CPU", 16
        world = bpy.data.worlds.new("bench_world")
        world.color = (0.6, 0.6, 0.6)
        scene.world = world
    return scene, obj, cam


def _matrix(m):
    import mathutils

    return mathutils.Matrix([list(map(float, row)) for row in m])


def _visible(bpy, scene, w2c, points, pixels, size, tolerance=1e-3) -> np.ndarray:
    """In the image, in front of the camera, and the first surface hit along its camera ray."""
    import mathutils

    depsgraph = bpy.context.evaluated_depsgraph_get()
    eye = -w2c[:3, :3].T @ w2c[:3, 3]
    depth = (points @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
    inside = (pixels >= 0).all(1) & (pixels < size).all(1) & (depth > 0)
    out = np.zeros(len(points), bool)
    origin = mathutils.Vector(eye.tolist())
    for i in np.flatnonzero(inside):
        ray = points[i] - eye
        dist = float(np.linalg.norm(ray))
        hit = scene.ray_cast(depsgraph, origin, mathutils.Vector((ray / dist).tolist()),
                             distance=dist * (1 - tolerance))[0]
        out[i] = not hit
    return out


def main(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m blender_stchain eval make-bench",
                                description="render the synthetic benchmark (PyPI bpy, CPU)")
    p.add_argument("out", help="benchmark folder to write")
    p.add_argument("--size", type=int, default=BenchSpec.size, help="frame width = height in pixels")
    p.add_argument("--clips", default=",".join(BenchSpec.clips),
                   help="comma list of mushroom_static, octopus_orbit, capsule_twist, ...")
    p.add_argument("--frames", default=",".join(map(str, BenchSpec.frames)), help="frames per clip (comma list)")
    p.add_argument("--tracks", type=int, default=BenchSpec.tracks, help="GT 2D tracks per clip")
    p.add_argument("--engine", default="BLENDER_WORKBENCH", choices=["BLENDER_WORKBENCH", "CYCLES"])
    p.add_argument("--meshes",
                   help="folder of NAME.npz animated meshes (default: $STCHAIN_SHARED_DIR/data/animated_glb)")
    args = p.parse_args(argv)
    clips = tuple(c for c in args.clips.split(",") if c)
    frames = tuple(int(f) for f in args.frames.split(","))
    if len(frames) == 1:
        frames = frames * len(clips)
    if len(frames) != len(clips):
        raise EvalError(f"--frames gives {len(frames)} counts for {len(clips)} clips")
    spec = BenchSpec(size=args.size, frames=frames, clips=clips, tracks=args.tracks, engine=args.engine)
    try:
        import bpy  # noqa: F401
    except ImportError:
        raise EvalError("make-bench needs the PyPI bpy module (pip install bpy==5.0.1, Python 3.11)") from None
    folders = build(args.out, spec, glb_dir=args.meshes)
    (Path(args.out) / "bench.json").write_text(json.dumps({"clips": [f.name for f in folders],
                                                           "spec": spec.__dict__}, indent=1, default=list))
    print(f"benchmark written: {args.out} ({len(folders)} clips)")
    return 0
