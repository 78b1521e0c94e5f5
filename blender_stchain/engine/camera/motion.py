"""Presentations: the object's per-frame rigid motion, and moving it into the camera."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .geometry import rigid
from .solution import CameraSolution


@dataclass
class ObjectMotion:
    """Per-frame rigid motion of the object: ``vertices[t] ~= R[t] @ anchor + t[t]``."""

    matrices: np.ndarray  # (T, 4, 4) anchor -> frame t
    rms: np.ndarray  # (T,) weighted RMS of what the rigid fit leaves (the deformation)


def _procrustes(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rigid fit (Kabsch) per frame: B[t] ~= R[t] @ A + t[t]; A (N,3), B (T,N,3), w (T,N)."""
    wn = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
    ma = wn @ A
    mb = np.einsum("tn,tnk->tk", wn, B)
    Hm = np.einsum("tn,tni,tnj->tij", wn, A[None] - ma[:, None], B - mb[:, None])
    U, _, Vt = np.linalg.svd(Hm)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(Hm)
    D[:, 0, 0] = D[:, 1, 1] = 1.0
    D[:, 2, 2] = d
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    return R, mb - np.einsum("tij,tj->ti", R, ma)


def object_motion(anchor_vertices, vertices, weights=None) -> ObjectMotion:
    """The object's per-frame rigid motion relative to the anchor (weighted Procrustes)."""
    A = np.asarray(anchor_vertices, np.float64)
    B = np.asarray(vertices, np.float64)
    w = np.ones(B.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    R, t = _procrustes(A, B, w)
    moved = A[None] @ np.swapaxes(R, -1, -2) + t[:, None]
    wn = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
    rms = np.sqrt((wn * ((moved - B) ** 2).sum(-1)).sum(-1))
    return ObjectMotion(matrices=rigid(R, t), rms=rms)


PRESENTATIONS = ("object_moves", "camera_moves")


def present(solution: CameraSolution, mode: str, motion: ObjectMotion, vertices) -> tuple[CameraSolution, np.ndarray]:
    """Camera and vertices for a presentation; every frame's image stays exactly the same.

    "object_moves": as solved. "camera_moves": the object's rigid motion M_t goes into the camera
    (world_to_camera @ M_t) and the vertices lose it (M_t^-1 applied), so the mesh only deforms.
    """
    if mode not in PRESENTATIONS:
        raise ValueError(f"camera mode must be one of {PRESENTATIONS}, got {mode!r}")
    V = np.asarray(vertices)
    if mode == "object_moves":
        return solution, V
    M = motion.matrices
    return replace(solution, world_to_camera=solution.world_to_camera @ M), remove_motion(M, V)


def remove_motion(matrices: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Apply M_t^-1 to each frame's vertices (T, N, 3): R^T (v - t). Works on frame chunks too."""
    V = np.asarray(vertices)
    R, t = matrices[:, :3, :3], matrices[:, :3, 3]
    return np.einsum("tji,tnj->tni", R, V - t[:, None]).astype(V.dtype)
