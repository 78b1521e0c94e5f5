"""2D tracks: landmark vertices projected into the footage, with ray-cast visibility."""

from __future__ import annotations

import numpy as np

from .geometry import project, to_camera

FACE_FRAMES = 80_000  # faces x frames per vectorised occlusion test (~4 MB of face corners per 10k)
SUBSET_STEPS = (16, 1)  # every 16th face first, then every face for the landmarks still unsettled
PAIR_CHUNK = 1 << 17  # (landmark, face) pairs tested at once


def _spread(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of ``counts``: the run index and the position inside the run of every element."""
    run = np.repeat(np.arange(len(counts)), counts)
    return run, np.arange(len(run)) - np.repeat(np.cumsum(counts) - counts, counts)


def _grid(q, seen):
    """A uniform grid over each frame's seen landmarks: origin (B, 2), cell size (B,), cells per side."""
    G = int(np.clip(np.sqrt(seen.sum(1).max()), 4, 256))  # ~1 landmark a cell: fewer face cells beat fewer pairs
    any_seen = seen.any(1)[:, None]
    origin = np.where(any_seen, np.where(seen[..., None], q, np.inf).min(1), 0.0)
    top = np.where(any_seen, np.where(seen[..., None], q, -np.inf).max(1), 1.0)
    return origin, np.maximum((top - origin).max(-1), 1e-12) / G * (1 + 1e-9), G


def _face_cells(p, front, origin, cell, G):
    """(frame, face) and grid key of every cell a front face's 2D box touches."""
    lo = np.floor((p.min(2) - origin[:, None]) / cell[:, None, None])
    hi = np.floor((p.max(2) - origin[:, None]) / cell[:, None, None])
    fb, ff = np.nonzero(front & (hi >= 0).all(-1) & (lo <= G).all(-1))
    lo = np.clip(lo[fb, ff], 0, G).astype(np.int64)
    hi = np.clip(hi[fb, ff], 0, G).astype(np.int64)
    nx = hi[:, 0] - lo[:, 0] + 1
    box, local = _spread(nx * (hi[:, 1] - lo[:, 1] + 1))
    key = (fb[box] * (G + 1) + lo[box, 1] + local // nx[box]) * (G + 1) + lo[box, 0] + local % nx[box]
    return fb[box], ff[box], key


def _pairs(q, seen, p, front, nearest, limit):
    """(frame, landmark) x (frame, face) pairs whose image point / 2D face box share a cell of a
    uniform grid laid over each frame's landmarks, leaving out faces whose nearest corner (``nearest``,
    (B, F)) lies behind every landmark of the cell (``limit``, (B, L): the depth a hiding face must
    beat): only these can occlude, so the depth test stays near-linear in mesh size."""
    origin, cell, G = _grid(q, seen)
    deepest_in_frame = np.where(seen, limit, -np.inf).max(1)[:, None]
    fb, ff, face_key = _face_cells(p, front & (nearest < deepest_in_frame), origin, cell, G)
    lb, ll = np.nonzero(seen)
    qc = np.floor((q[lb, ll] - origin[lb]) / cell[lb, None]).astype(np.int64)
    lm_key = (lb * (G + 1) + qc[:, 1]) * (G + 1) + qc[:, 0]
    order = np.argsort(lm_key, kind="stable")
    keys, first, counts = np.unique(lm_key[order], return_index=True, return_counts=True)
    deepest = np.maximum.reduceat(limit[lb, ll][order], first)  # ``seen`` is never empty (see _occluded)
    at = np.minimum(np.searchsorted(keys, face_key), len(keys) - 1)
    keep = (keys[at] == face_key) & (nearest[fb, ff] < deepest[at])
    at, fb, ff = at[keep], fb[keep], ff[keep]
    which, offset = _spread(counts[at])
    lm = order[first[at][which] + offset]
    return lb[lm], ll[lm], ff[which]


def _occluded(cam: np.ndarray, faces: np.ndarray, ids: np.ndarray, seen: np.ndarray, tolerance: float) -> np.ndarray:
    """(B, L): is any face in front of each seen landmark along its camera ray? Cam-space vertices
    (B, Nv, 3) of a block of frames, tested together.

    Exact ray casting in the image plane (see ``_hits``). A sparse subset of the faces goes first:
    on a mesh with many layers most landmarks are hidden by several faces, so the subset settles
    them and only the rest meet every face. The answer is the same as testing every face at once.
    """
    z = cam[..., 2]
    q = cam[:, ids, :2] / np.where(z[:, ids] > 1e-9, z[:, ids], 1.0)[..., None]
    xy = cam[..., :2] / np.where(z > 1e-9, z, 1.0)[..., None]
    limit = z[:, ids] * (1 - tolerance)  # (B, L) a face must come nearer than this to hide a landmark
    hidden = np.zeros_like(seen)
    for step in SUBSET_STEPS:
        todo = seen & ~hidden
        if not todo.any():
            break
        subset = faces[::step]
        front = (z[:, subset] > 1e-9).all(-1)
        p = xy[:, subset]  # (B, F', 3, 2)
        nearest = z[:, subset].min(-1)  # (B, F') depth of each face's nearest corner
        pairs = _pairs(q, todo, p, front, nearest, limit)
        hidden |= _hits(pairs, p, z, q, subset, ids, limit, nearest)
    return hidden


def _hits(pairs, p, z, q, faces, ids, limit, nearest) -> np.ndarray:
    """(B, L): does a face of ``pairs`` (frame, landmark, face) hide the landmark? Barycentric test
    of the landmark's normalised image point against the projected face, depth interpolated
    perspective-correctly (1/z is linear on screen) against ``limit``; faces touching the landmark's
    vertex are skipped, and so is every face whose nearest corner lies behind the landmark (before
    the arithmetic). ``PAIR_CHUNK`` pairs at a time keeps temporaries small (big ones cost page faults)."""
    B, L = limit.shape
    count = np.zeros(B * L)
    for s in range(0, len(pairs[0]), PAIR_CHUNK):
        b, lm, f = (a[s:s + PAIR_CHUNK] for a in pairs)
        near = nearest[b, f] < limit[b, lm]
        b, lm, f = b[near], lm[near], f[near]
        pf, corners = p[b, f], faces[f]
        e1, e2 = pf[:, 1] - pf[:, 0], pf[:, 2] - pf[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        ok = np.abs(det) > 1e-18
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        d = q[b, lm] - pf[:, 0]
        b1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) * inv
        b2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) * inv
        b0 = 1 - b1 - b2
        inside = ok & (b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9)
        zf = z[b[:, None], corners]
        depth = 1.0 / np.where(inside, b0 / zf[:, 0] + b1 / zf[:, 1] + b2 / zf[:, 2], 1.0)
        touching = (corners == ids[lm, None]).any(1)
        hit = inside & ~touching & (depth < limit[b, lm])
        count += np.bincount(b * L + lm, weights=hit, minlength=B * L)
    return count.reshape(B, L) > 0


def _visible(w2c, block, uv, faces, ids, size, tolerance) -> np.ndarray:
    """(B, L) visibility of a block of frames: in front of the camera, inside the image, not hidden."""
    W, H = size
    cam = to_camera(w2c, block)
    seen = (cam[:, ids, 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
    return seen & ~_occluded(cam, faces, ids, seen, tolerance)


def tracks_2d(vertices, faces, landmark_ids, K, world_to_camera, image_size, depth_tolerance=1e-3, progress=None,
              pool=None):
    """Projected landmarks (T, L, 2) float32 and visibility (T, L) uint8.

    Not visible: behind the camera, outside the image, or hidden by the mesh (depth test by ray
    casting; ``depth_tolerance`` is relative to the landmark's depth). Tracks of landmarks behind
    the camera are 0 (they have no image; always check ``visible``). ``progress(done, total)``
    every 32 frames (it may raise to cancel). ``pool``: an executor whose thread tests every other
    block of frames beside this one (numpy releases the GIL, so a second core works); the frames
    are still read here, in order (a spool has one open file).
    """
    F = np.asarray(faces, np.int64)
    ids = np.asarray(landmark_ids, np.int64)
    w2c = np.asarray(world_to_camera, np.float64)
    T = len(vertices)
    tracks = np.empty((T, len(ids), 2))
    visible = np.zeros((T, len(ids)), np.uint8)
    for a in range(0, T, 32):  # 32 frames at a time: ``vertices`` may be the spool of a long clip
        block = np.asarray(vertices[a:a + 32], np.float64)
        tracks[a:a + 32] = project(K, w2c[a:a + 32], block[:, ids])
        jobs, step = [], max(1, FACE_FRAMES // max(len(F), 1))  # small blocks: fewer cache misses, finer sharing
        for s in range(0, len(block), step):
            rows = slice(a + s, a + min(s + step, len(block)))
            args = (w2c[rows], block[s:s + step], tracks[rows], F, ids, image_size, depth_tolerance)
            if pool is not None and s // step % 2:
                jobs.append((rows, pool.submit(_visible, *args)))
            else:
                visible[rows] = _visible(*args)
        for rows, job in jobs:
            visible[rows] = job.result()
        if progress is not None:
            progress(min(a + 32, T), T)
    return np.nan_to_num(tracks, nan=0.0).astype(np.float32), visible
