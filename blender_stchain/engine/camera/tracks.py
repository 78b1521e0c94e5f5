"""2D tracks: landmark vertices projected into the footage, with ray-cast visibility."""

from __future__ import annotations

import numpy as np

from .geometry import project, to_camera


def _candidates(q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(landmark, face) pairs whose image points / 2D face boxes share a cell of a uniform grid
    laid over the landmarks: only these can occlude, so the depth test stays near-linear in size."""
    grid = int(np.clip(np.sqrt(len(p)), 8, 256))
    origin = q.min(0)
    cell = max(float((q.max(0) - origin).max()), 1e-12) / grid * (1 + 1e-9)
    lo = np.floor((p.min(1) - origin) / cell)
    hi = np.floor((p.max(1) - origin) / cell)
    keep = np.flatnonzero((hi >= 0).all(1) & (lo <= grid).all(1))
    lo = np.clip(lo[keep], 0, grid).astype(np.int64)
    hi = np.clip(hi[keep], 0, grid).astype(np.int64)
    nx, ny = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    face = np.repeat(np.arange(len(keep)), nx * ny)
    local = np.arange(len(face)) - np.repeat(np.cumsum(nx * ny) - nx * ny, nx * ny)
    key = (lo[face, 1] + local // nx[face]) * (grid + 1) + lo[face, 0] + local % nx[face]
    order = np.argsort(key, kind="stable")
    key, face = key[order], face[order]
    qcell = np.floor((q - origin) / cell).astype(np.int64)
    qkey = qcell[:, 1] * (grid + 1) + qcell[:, 0]
    start, end = np.searchsorted(key, qkey, "left"), np.searchsorted(key, qkey, "right")
    counts = end - start
    lm = np.repeat(np.arange(len(q)), counts)
    pos = np.repeat(start, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return lm, keep[face[pos]]


def _occluded(cam: np.ndarray, faces: np.ndarray, ids: np.ndarray, tolerance: float) -> np.ndarray:
    """Per landmark: is any face in front of it along its camera ray? Cam-space vertices (Nv,3).

    Exact ray casting in the image plane: barycentric test of each landmark's normalised image point
    against the projected faces, depth interpolated perspective-correctly (1/z is linear on screen).
    Faces touching the landmark's vertex are skipped; faces reaching behind the camera are ignored.
    """
    faces = faces[(cam[faces, 2] > 1e-9).all(1)]
    q = cam[ids, :2] / cam[ids, 2:3]
    tri = cam[faces]  # (F, 3, 3)
    p = tri[..., :2] / tri[..., 2:3]
    lm, f = _candidates(q, p)
    e1, e2 = p[f, 1] - p[f, 0], p[f, 2] - p[f, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-18
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    d = q[lm] - p[f, 0]
    b1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) * inv
    b2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) * inv
    b0 = 1 - b1 - b2
    inside = ok & (b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9)
    inv_z = b0 / tri[f, 0, 2] + b1 / tri[f, 1, 2] + b2 / tri[f, 2, 2]
    z = 1.0 / np.where(inside, inv_z, 1.0)
    touching = (faces[f] == ids[lm, None]).any(1)
    hit = inside & ~touching & (z < cam[ids[lm], 2] * (1 - tolerance))
    return np.bincount(lm, weights=hit, minlength=len(ids)) > 0


def tracks_2d(vertices, faces, landmark_ids, K, world_to_camera, image_size, depth_tolerance=1e-3, progress=None):
    """Projected landmarks (T, L, 2) float32 and visibility (T, L) uint8.

    Not visible: behind the camera, outside the image, or hidden by the mesh (depth test by ray
    casting; ``depth_tolerance`` is relative to the landmark's depth). Tracks of landmarks behind
    the camera are 0 (they have no image; always check ``visible``). ``progress(done, total)``
    every 32 frames (it may raise to cancel).
    """
    F = np.asarray(faces, np.int64)
    ids = np.asarray(landmark_ids, np.int64)
    w2c = np.asarray(world_to_camera, np.float64)
    W, H = image_size
    T = len(vertices)
    tracks = np.empty((T, len(ids), 2))
    visible = np.zeros((T, len(ids)), np.uint8)
    for a in range(0, T, 32):  # 32 frames at a time: ``vertices`` may be the spool of a long clip
        block = np.asarray(vertices[a:a + 32], np.float64)
        tracks[a:a + 32] = project(K, w2c[a:a + 32], block[:, ids])
        for t, Vt in enumerate(block, a):
            cam = to_camera(w2c[t], Vt)
            u, v = tracks[t, :, 0], tracks[t, :, 1]
            seen = (cam[ids, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            if seen.any():
                seen[seen] = ~_occluded(cam, F, ids[seen], depth_tolerance)
            visible[t] = seen
        if progress is not None:
            progress(min(a + 32, T), T)
    return np.nan_to_num(tracks, nan=0.0).astype(np.float32), visible
