"""The silhouette term's inputs: outline points per frame and the mask's distance field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Silhouette:
    """Boundary points that must project onto the mask outline: ``points`` (T, B, 3) in object
    space, ``distance`` (T, H, W) pixel distance to the outline (``mask_distance_field``), and the
    weight of the term against the reprojection term (per point)."""

    points: np.ndarray
    distance: np.ndarray
    weight: float = 0.1


def mask_distance_field(mask: np.ndarray, max_distance: int = 64) -> np.ndarray:
    """Euclidean distance (px) from every pixel centre to the mask outline, (H, W) float32.

    The outline is the set of mask pixels with a 4-neighbour outside the mask (or on the image
    border). Exact up to ``max_distance`` and clipped there: far-off points then feel no pull,
    which keeps the silhouette term robust to a wrong mask. Separable: column distance first,
    then a windowed minimum along rows.
    """
    m = np.asarray(mask).astype(bool)
    pad = np.pad(m, 1, constant_values=False)
    edge = m & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
    Hh, Ww = m.shape
    rows = np.arange(Hh)[:, None]
    far = Hh + Ww + max_distance
    above = np.maximum.accumulate(np.where(edge, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(edge, rows, 2 * far)[::-1], axis=0)[::-1]
    col = np.minimum(np.minimum(rows - above, below - rows), max_distance).astype(np.float64) ** 2
    best = col.copy()
    for dx in range(1, min(max_distance, Ww - 1) + 1):
        best[:, dx:] = np.minimum(best[:, dx:], col[:, :-dx] + dx * dx)
        best[:, :-dx] = np.minimum(best[:, :-dx], col[:, dx:] + dx * dx)
    return np.minimum(np.sqrt(best), max_distance).astype(np.float32)
