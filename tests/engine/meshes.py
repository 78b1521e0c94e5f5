"""Small analytic meshes for unit tests (built here, not by the code under test)."""

from __future__ import annotations

import numpy as np


def uv_sphere(rings: int = 12, segments: int = 24, radius: float = 1.0, centre=(0.0, 0.0, 0.0)):
    """Closed UV sphere: vertices (2 + (rings-1)*segments, 3) float64, faces (F, 3) int64."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring_pts = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    V = np.concatenate([[[0, 0, 1.0]], ring_pts, [[0, 0, -1.0]]]) * radius + np.asarray(centre)

    def idx(r, s):
        return 1 + r * segments + s % segments

    faces = [(0, idx(0, s), idx(0, s + 1)) for s in range(segments)]
    for r in range(rings - 2):
        for s in range(segments):
            a, b, c, d = idx(r, s), idx(r, s + 1), idx(r + 1, s), idx(r + 1, s + 1)
            faces += [(a, c, b), (b, c, d)]
    south = len(V) - 1
    faces += [(idx(rings - 2, s), south, idx(rings - 2, s + 1)) for s in range(segments)]
    return V, np.asarray(faces, dtype=np.int64)


def rotation(axis, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
