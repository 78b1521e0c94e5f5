"""Rotations and pinhole projection (OpenCV convention: x right, y down, z forward; pixel
origin at the top-left corner of the image, so the centre of pixel (i, j) is (i + 0.5, j + 0.5))."""

from __future__ import annotations

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) -> matrices (..., 3, 3)."""
    theta = np.linalg.norm(v, axis=-1)[..., None, None]
    k = skew(v)
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, (1 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * k + b * (k @ k)


def rotation_log(R: np.ndarray) -> np.ndarray:
    """Matrices (..., 3, 3) -> rotation vectors (..., 3), stable near 0 and pi."""
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = np.sin(theta)
    scale = np.where(sin > 1e-6, theta / (2 * np.where(sin > 1e-6, sin, 1.0)), 0.5)[..., None]
    out = w * scale
    near_pi = theta > np.pi - 1e-3
    if np.any(near_pi):  # axis from the symmetric part: R + I = 2 a a^T at theta = pi
        S = (R[near_pi] + np.eye(3)) / 2
        col = np.argmax(np.diagonal(S, axis1=-2, axis2=-1), -1)
        axis = S[np.arange(len(S)), :, col]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        axis *= np.where(np.sum(axis * w[near_pi], -1, keepdims=True) < 0, -1, 1)
        out[near_pi] = axis * theta[near_pi][..., None]
    return out


def nearest_rotation(M: np.ndarray) -> np.ndarray:
    """Closest proper rotation (Frobenius) to each (..., 3, 3) matrix."""
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    U = U.copy()
    U[..., :, 2] *= d[..., None]
    return U @ Vt


def slerp(Ra: np.ndarray, Rb: np.ndarray, s: float) -> np.ndarray:
    return rodrigues(s * rotation_log(Rb @ Ra.T)) @ Ra


def rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.zeros(R.shape[:-2] + (4, 4))
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = R, t, 1.0
    return out


def to_camera(world_to_camera: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(T, 4, 4) x (T, N, 3) -> camera-space points (T, N, 3)."""
    return points @ np.swapaxes(world_to_camera[..., :3, :3], -1, -2) + world_to_camera[..., None, :3, 3]


def project(K: np.ndarray, world_to_camera: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (T, N, 2) of ``points`` (T, N, 3) (or (N, 3) for every frame).

    Points behind the camera get NaN: they have no image.
    """
    w2c = np.asarray(world_to_camera, np.float64)
    pts = np.asarray(points, np.float64)
    if w2c.ndim == 2:
        w2c = w2c[None]
    if pts.ndim == 2:
        pts = np.broadcast_to(pts, (len(w2c),) + pts.shape)
    cam = to_camera(w2c, pts) @ np.asarray(K, np.float64).T
    z = cam[..., 2:3]
    return cam[..., :2] / np.where(z > 0, z, np.nan)
