"""Attention-like 2D-3D matches on Blender-deformed meshes, with the ground truth camera.

What real matches from attention over DINOv2 patches look like: error a fraction of a
patch for landmarks the camera sees, 2-3 patches for those it cannot see, facing away or hidden
behind another part (no patch shows them: attention puts them on the visible surface, a few patches
off), outliers that land on the object (inside its 2D box), and a patch of tens of footage pixels. The truth is built with the plain look-at and pinhole
formulas of ``camera_scenes``, independently of ``engine.camera``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.conftest import DATA
from tests.engine.camera_scenes import intrinsics, orbit, pinhole

PATCHES = 37  # DINOv2 patches across the model image


def mesh(name: str):
    d = np.load(DATA / "animated_glb" / f"{name}.npz")
    return d["vertices"].astype(np.float64), d["faces"].astype(np.int64)


def vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, pointing out of the volume whatever the winding of the faces."""
    n = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    if (n * (V[F[:, 0]] - V.mean(0))).sum() < 0:  # signed volume: inward winding
        n = -n
    out = np.zeros_like(V)
    for k in range(3):
        np.add.at(out, F[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


@dataclass
class Matches:
    K: np.ndarray
    w2c: np.ndarray  # (T, 4, 4) truth
    vertices: np.ndarray  # (T, V, 3) the deformed mesh
    faces: np.ndarray
    landmark_ids: np.ndarray
    points3d: np.ndarray  # (T, L, 3)
    points2d: np.ndarray  # (T, L, 2)
    weights: np.ndarray  # (T, L) attention confidence
    sigma: np.ndarray  # (T, L) uncertainty the attention reports (px)
    image_size: tuple[int, int]
    distance: float
    patch_px: float
    front: np.ndarray  # (T, L) the camera sees the landmark: it faces the camera and nothing hides it


def barycentric(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """Weights (a, b) of uniform points in a triangle, arrays of ``shape`` + (1,): corner 0 + a edge 01 + b edge 02."""
    a, b = rng.random((2, *shape, 1))
    flip = a + b > 1
    return np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)


def surface_samples(V: np.ndarray, F: np.ndarray, per_face: int, seed: int = 0) -> np.ndarray:
    """``per_face`` uniform points on every face of V (N, 3): (F * per_face, 3)."""
    rng = np.random.default_rng(seed)
    a, b = barycentric(rng, (len(F), per_face))
    tri = V[F]
    return (tri[:, None, 0] + a * (tri[:, None, 1] - tri[:, None, 0]) + b * (tri[:, None, 2] - tri[:, None, 0])).reshape(-1, 3)


def unoccluded(K, w2c, V, F, points, image_size, cell_px=4.0, per_face=6) -> np.ndarray:
    """Which ``points`` (L, 3) on the surface of V nothing else hides from the camera: a depth buffer of
    dense surface samples in cells of ``cell_px`` footage pixels; a point is hidden when the surface in
    its cell comes nearer than it by over 2% of the object's size."""
    W, H = image_size
    cols, rows = int(np.ceil(W / cell_px)), int(np.ceil(H / cell_px))

    def cells(pts):
        uv = np.floor(pinhole(K, w2c, pts) / cell_px).astype(np.int64)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < cols) & (uv[:, 1] >= 0) & (uv[:, 1] < rows)
        return np.where(inside, uv[:, 1] * cols + uv[:, 0], -1), pts @ w2c[2, :3] + w2c[2, 3]

    key, depth = cells(surface_samples(V, F, per_face))
    nearest = np.full(rows * cols, np.inf)
    np.minimum.at(nearest, key[key >= 0], depth[key >= 0])
    key, depth = cells(points)
    tolerance = 0.02 * np.linalg.norm(V.max(0) - V.min(0))
    return (key < 0) | (depth <= nearest[np.maximum(key, 0)] + tolerance)


def generate(name="octopus", kind="static", quality="moderate", landmarks=512, image_size=(1920, 1080),
             fov_deg=55.0, seed=0) -> Matches:
    """``quality``: "moderate" (0.4 / 2.5 patches, 25% outliers), "heavy" (0.8 / 3.5 patches, 35%),
    "garbage" (2D independent of 3D) or "centre" (every match near the crop centre, what diffuse
    attention with random weights gives). Seen landmarks get the first error, unseen ones the second."""
    verts, faces = mesh(name)
    T = len(verts)
    rng = np.random.default_rng(seed)
    centre3 = verts.reshape(-1, 3).mean(0)
    size = np.linalg.norm(verts[0].max(0) - verts[0].min(0))
    W, H = image_size
    K = intrinsics(image_size, fov_deg)
    distance = 0.9 * K[0, 0] * size / H  # the object spans about 90% of the image height
    w2c = orbit(centre3, distance, T, kind, 30.0, 60.0, 12.0)
    ids = rng.choice(verts.shape[1], landmarks, replace=False)
    X = verts[:, ids]
    clean = np.stack([pinhole(K, w2c[t], X[t]) for t in range(T)])
    box_lo, box_hi = clean.min(1), clean.max(1)  # (T, 2) the object's 2D box
    crop = 1.15 * (box_hi - box_lo).max(-1)  # square crop around the object with a margin
    patch = float(np.median(crop)) / PATCHES
    front = np.zeros((T, landmarks), bool)
    for t in range(T):
        C = -w2c[t, :3, :3].T @ w2c[t, :3, 3]
        n = vertex_normals(verts[t], faces)[ids]
        front[t] = ((n * (C - X[t])).sum(-1) > 0) & unoccluded(K, w2c[t], verts[t], faces, X[t], image_size)
    front_noise, back_noise, outliers = {"moderate": (0.4, 2.5, 0.25), "heavy": (0.8, 3.5, 0.35)}.get(
        quality, (0.4, 2.5, 0.25))
    uv = clean + rng.normal(0, front_noise * patch, clean.shape)
    back = ~front
    direction = rng.normal(size=clean.shape)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    offset = direction * rng.uniform(2.0, 3.0, clean.shape[:-1] + (1,)) * (back_noise / 2.5) * patch
    uv[back] = clean[back] + offset[back]
    bad = rng.random((T, landmarks)) < outliers
    if quality == "garbage":
        bad[:] = True
    uv = np.where(bad[..., None], rng.uniform(box_lo[:, None], box_hi[:, None], clean.shape), uv)
    if quality == "centre":
        uv = 0.5 * (box_lo + box_hi)[:, None] + rng.normal(0, 0.3 * patch, clean.shape)
    weights = rng.uniform(0.3, 1.0, (T, landmarks))
    sigma = patch * rng.uniform(0.4, 0.7, (T, landmarks))
    return Matches(K, w2c, verts, faces, ids, X, uv, weights, sigma, (W, H), distance, patch, front)


def accuracy(sol, m: Matches) -> dict:
    """Focal error (share), worst rotation error (deg) and worst camera centre error (share of distance)."""
    Ra, Rb = sol.world_to_camera[:, :3, :3], m.w2c[:, :3, :3]
    cos = (np.trace(Ra @ np.swapaxes(Rb, -1, -2), axis1=-2, axis2=-1) - 1) / 2
    rot = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    ca = -np.einsum("tji,tj->ti", Ra, sol.world_to_camera[:, :3, 3])
    cb = -np.einsum("tji,tj->ti", Rb, m.w2c[:, :3, 3])
    return {"focal": abs(sol.K[0, 0] / m.K[0, 0] - 1), "rotation_deg": float(rot.max()),
            "centre": float(np.linalg.norm(ca - cb, axis=-1).max() / m.distance)}


def masks(m: Matches, samples: int = 400_000, seed: int = 0) -> np.ndarray:
    """The object's true masks (T, H, W) bool: dense points on every face projected with the truth,
    then closed and filled (a stand-in for the user's segmentation)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    W, H = m.image_size
    face = rng.integers(0, len(m.faces), samples)
    a, b = barycentric(rng, (samples,))
    out = np.zeros((len(m.vertices), H, W), bool)
    for t, V in enumerate(m.vertices):
        tri = V[m.faces[face]]
        pts = tri[:, 0] + a * (tri[:, 1] - tri[:, 0]) + b * (tri[:, 2] - tri[:, 0])
        uv = np.floor(pinhole(m.K, m.w2c[t], pts)).astype(int)
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        out[t, uv[ok, 1], uv[ok, 0]] = True
        out[t] = ndimage.binary_fill_holes(ndimage.binary_closing(out[t], iterations=2))
    return out
