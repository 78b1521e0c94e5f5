"""Synthetic footage for camera tests: a real animated mesh seen by a known camera.

The ground truth is built here with plain look-at maths and a pinhole formula written out in full,
independently of ``engine.camera``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blender_stchain.evaluation.synthetic import scenes
from tests.conftest import DATA

OCTOPUS = DATA / "animated_glb" / "octopus.npz"


def octopus():
    d = np.load(OCTOPUS)
    return d["vertices"].astype(np.float64), d["faces"]


def look_at(centre, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV world_to_camera (4,4) of a camera at ``centre`` looking at ``target`` (y-up world)."""
    return scenes.look_at(centre, target, up)


def pinhole(K, w2c, pts):
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2], K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]], -1)


@dataclass
class Scene:
    K: np.ndarray
    w2c: np.ndarray  # (T, 4, 4)
    points3d: np.ndarray  # (T, M, 3)
    points2d: np.ndarray  # (T, M, 2) noisy, with outliers
    clean2d: np.ndarray  # (T, M, 2)
    weights: np.ndarray  # (T, M)
    image_size: tuple[int, int]
    distance: float  # camera to object centre


def intrinsics(image_size, fov_deg: float) -> np.ndarray:
    """Pinhole K with the principal point at the centre and the given horizontal field of view."""
    W, H = image_size
    f = 0.5 * W / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])


def orbit(target, distance: float, T: int, kind: str, start_deg: float, sweep_deg: float, elev_deg: float):
    """(T, 4, 4) world-to-camera looking at ``target``: fixed at ``start_deg`` ("static") or sweeping
    ``sweep_deg`` of azimuth over the clip ("orbit"), at ``elev_deg`` elevation."""
    w2c = []
    for t in range(T):
        az = np.radians(start_deg) + (np.radians(sweep_deg) * t / (T - 1) if kind == "orbit" else 0.0)
        el = np.radians(elev_deg)
        C = target + distance * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        w2c.append(look_at(C, target))
    return np.stack(w2c)


def scene(kind: str, matches=300, image_size=(1280, 720), fov_deg=50.0, noise=1.0, outliers=0.2, seed=0):
    verts, _ = octopus()
    T = len(verts)
    rng = np.random.default_rng(seed)
    size = np.linalg.norm(verts[0].max(0) - verts[0].min(0))
    distance = 4 * size
    target = verts.reshape(-1, 3).mean(0)
    W, H = image_size
    K = intrinsics(image_size, fov_deg)
    w2c = orbit(target, distance, T, kind, 20.0, 90.0, 15.0)
    idx = rng.choice(verts.shape[1], matches, replace=False)
    pts = verts[:, idx]
    clean = np.stack([pinhole(K, w2c[t], pts[t]) for t in range(T)])
    noisy = clean + rng.normal(0, noise, clean.shape)
    bad = rng.random((T, matches)) < outliers
    noisy[bad] = rng.uniform([0, 0], [W, H], (int(bad.sum()), 2))
    return Scene(K, w2c, pts, noisy, clean, np.ones((T, matches)), image_size, distance)


def rotation_error_deg(Ra, Rb) -> np.ndarray:
    cos = (np.trace(Ra @ np.swapaxes(Rb, -1, -2), axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def centres(w2c) -> np.ndarray:
    return -np.einsum("tji,tj->ti", w2c[:, :3, :3], w2c[:, :3, 3])
