"""Synthetic benchmark scenes in numpy (no bpy, no torch): animated meshes and camera paths.

World = Blender's (Z up). Cameras are OpenCV world->camera matrices; ``make_bench`` hands them to
Blender through ``blender_camera_matrix``, and the GT files keep the OpenCV form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Scene:
    name: str
    vertices: np.ndarray  # (T, V, 3)
    faces: np.ndarray  # (F, 3)
    camera: str  # "static" | "orbit"
    source: str


def sphere(rings: int = 24, segments: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV sphere of radius 1: vertices (V, 3), triangles (F, 3)."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    V = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]])
    idx = 1 + np.arange(len(ring)).reshape(rings - 1, segments)
    nxt = np.roll(idx, -1, axis=1)
    top = np.stack([np.zeros(segments, int), idx[0], nxt[0]], 1)[:, [0, 2, 1]]
    bottom = np.stack([np.full(segments, len(V) - 1), nxt[-1], idx[-1]], 1)[:, [0, 2, 1]]
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    quads = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return V, np.concatenate([top, quads, bottom]).astype(np.int32)


def bending_capsule(frames: int) -> Scene:
    """A procedurally deformed object: a tall ellipsoid that bends, twists and sways over the clip."""
    V0, F = sphere()
    # bumps on one side and an off-centre bulge: no mirror or rotational symmetry, so the
    # 24-start ICP of ActionBench has one right answer
    bump = 0.5 * np.exp(-((V0 - [0.6, 0.0, 0.6]) ** 2).sum(1) / 0.08) + 0.3 * np.exp(-((V0 - [0, -0.7, -0.5]) ** 2).sum(1) / 0.1)
    V0 = V0 * (1 + bump[:, None]) * np.array([0.35, 0.25, 0.8])
    out = []
    for t in np.linspace(0, 1, frames):
        h = (V0[:, 2] + 0.8) / 1.6  # 0 at the bottom, 1 at the top
        twist = 1.2 * np.sin(2 * np.pi * t) * h
        c, s = np.cos(twist), np.sin(twist)
        x, y = c * V0[:, 0] - s * V0[:, 1], s * V0[:, 0] + c * V0[:, 1]
        bend = 0.45 * np.sin(np.pi * t) * h**2
        out.append(np.stack([x + bend, y, V0[:, 2] * (1 - 0.1 * np.sin(2 * np.pi * t))], -1)
                   + np.array([0.2 * np.sin(2 * np.pi * t), 0.0, 0.0]))
    return Scene("capsule_twist", np.asarray(out, np.float32), F, "orbit", "procedural")


def from_npz(path, name: str, camera: str, frames: int | None = None) -> Scene:
    """An animated GLB's arrays (shared data); ``frames`` > the clip's plays it forward then back."""
    d = np.load(path)
    V = d["vertices"]
    if frames and frames > len(V):
        cycle = np.concatenate([V, V[-2:0:-1]])
        V = np.concatenate([cycle] * (frames // len(cycle) + 1))[:frames]
    elif frames:
        V = V[:frames]
    return Scene(name, np.asarray(V, np.float32), np.asarray(d["faces"], np.int32), camera, str(path))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV world->camera (x right, y down, z forward) of a camera at ``eye`` facing ``target``."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z])
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def camera_path(kind: str, frames: int, target, distance: float) -> np.ndarray:
    """(T, 4, 4): "static" (one view, slightly above) or "orbit" (60 degrees around, rising)."""
    sweep = np.zeros(frames) if kind == "static" else np.radians(np.linspace(-30, 30, frames))
    lift = np.full(frames, 0.25) if kind == "static" else np.linspace(0.15, 0.45, frames)
    eyes = [np.asarray(target) + distance * np.array([np.sin(a), -np.cos(a), z]) for a, z in zip(sweep, lift)]
    return np.stack([look_at(e, target) for e in eyes])


def intrinsics(size: int, fov_deg: float = 40.0) -> np.ndarray:
    f = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])


def blender_camera_matrix(w2c) -> np.ndarray:
    """Blender camera ``matrix_world`` of an OpenCV world->camera (Blender looks down -Z, Y up)."""
    return np.linalg.inv(np.asarray(w2c, np.float64)) @ np.diag([1.0, -1.0, -1.0, 1.0])


def project(K, w2c, points) -> np.ndarray:
    """Pixels (N, 2) of points (N, 3) with the pixel-corner origin convention."""
    cam = np.asarray(points, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ np.asarray(K).T
    return uv[:, :2] / uv[:, 2:3]
