"""The silhouette term's inputs: outline points per frame and the mask's distance field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Silhouette:
    """Boundary points that must project onto the mask outline: ``points`` (T, B, 3) in object
    space, ``distance`` (T, H, W) signed pixel distance to the outline (``mask_distance_field``), and the
    weight of the term against the reprojection term (per point). ``scale``: footage pixels per
    field cell, so low-resolution fields keep memory small on long clips (values in footage px)."""

    points: np.ndarray
    distance: np.ndarray
    weight: float = 0.1
    scale: float = 1.0


def _distance_to(target: np.ndarray, max_distance: int) -> np.ndarray:
    """Euclidean distance (px) from every pixel centre to the nearest ``target`` pixel centre, (H, W),
    exact up to ``max_distance`` and clipped there. Separable: column distance first, then a windowed
    minimum along rows."""
    Hh, Ww = target.shape
    rows = np.arange(Hh)[:, None]
    far = Hh + Ww + max_distance
    above = np.maximum.accumulate(np.where(target, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(target, rows, 2 * far)[::-1], axis=0)[::-1]
    col = np.minimum(np.minimum(rows - above, below - rows), max_distance).astype(np.float64) ** 2
    best = col.copy()
    for dx in range(1, min(max_distance, Ww - 1) + 1):
        best[:, dx:] = np.minimum(best[:, dx:], col[:, :-dx] + dx * dx)
        best[:, :-dx] = np.minimum(best[:, :-dx], col[:, dx:] + dx * dx)
    return np.minimum(np.sqrt(best), max_distance)


def mask_distance_field(mask: np.ndarray, max_distance: int = 64) -> np.ndarray:
    """Signed distance (px) from every pixel centre to the mask outline, (H, W) float32: positive
    outside, negative inside, zero on the edges between inside and outside pixels (a pixel's distance
    to the nearest pixel of the other side, less half a pixel), so interpolated values cross zero
    where the outline is. Zero at an edge pixel's centre would put the outline half a pixel inside the
    mask: on a low-resolution field that is a few footage pixels all round, which a free focal
    absorbs (8.8% off on a 256-cell field of 1080p footage). Clipped at ``max_distance``: far-off
    points then feel no pull, which keeps the silhouette term robust to a wrong mask. No outline
    runs along the image border (an object cut by the frame has none there)."""
    m = np.asarray(mask).astype(bool)
    if m.all() or not m.any():
        return np.full(m.shape, -max_distance if m.any() else max_distance, np.float32)
    outside = _distance_to(~m, max_distance + 1) - 0.5
    inside = _distance_to(m, max_distance + 1) - 0.5
    return np.clip(np.where(m, -outside, inside), -max_distance, max_distance).astype(np.float32)


def outline_points(vertices: np.ndarray, K: np.ndarray, world_to_camera: np.ndarray, count: int = 64) -> np.ndarray:
    """Per frame, ``count`` vertices on the outline of the projected mesh, (T, count, 3): in each
    angular sector around the projected median, the farthest vertex (it lies on the outline)."""
    from .geometry import project

    V = np.asarray(vertices, np.float64)
    T, N = V.shape[:2]
    pix = project(K, world_to_camera, V)
    ok = np.isfinite(pix).all(-1)
    rel = pix - np.nanmedian(np.where(ok[..., None], pix, np.nan), axis=1, keepdims=True)
    sector = ((np.arctan2(rel[..., 1], rel[..., 0]) + np.pi) / (2 * np.pi) * count).astype(np.int64) % count
    radius = np.where(ok, np.hypot(rel[..., 0], rel[..., 1]), -1.0)
    key = (np.arange(T)[:, None] * count + sector).ravel()
    order = np.lexsort((-radius.ravel(), key))
    keys, first = np.unique(key[order], return_index=True)
    best = order[first] % N
    out = np.empty((T, count, 3))
    for t in range(T):  # sectors without a vertex repeat the frame's others
        ids = best[(keys // count) == t]
        out[t] = V[t, np.resize(ids, count)] if len(ids) else V[t, :count]
    return out


def mask_fields(masks, footage_size, cells: int = 256, max_distance: int = 12) -> tuple[np.ndarray, float]:
    """Low-resolution distance fields of masks given one at a time (any resolution with the
    footage's aspect), and the footage pixels per field cell: (T, h, w) float32, scale. About
    ``cells`` cells on the long side keep a 1000-frame clip's fields per chunk small."""
    W, H = footage_size
    scale = max(1.0, max(W, H) / cells)  # never finer than the footage
    fw, fh = int(np.ceil(W / scale)), int(np.ceil(H / scale))
    out = []
    for m in masks:
        m = np.asarray(m)
        ys = np.minimum(((np.arange(fh) + 0.5) * scale * m.shape[0] / H).astype(int), m.shape[0] - 1)
        xs = np.minimum(((np.arange(fw) + 0.5) * scale * m.shape[1] / W).astype(int), m.shape[1] - 1)
        out.append(mask_distance_field(m[ys][:, xs] > 0.5, max_distance))
    return np.stack(out), float(scale)
