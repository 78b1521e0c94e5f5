"""Honest evidence about a solve: errors over all weighted matches (not only the inliers), the
weighted inlier share and a status per frame, including pose jumps the matches do not support."""

from __future__ import annotations

import numpy as np

from .geometry import rotation_log
from .solution import FEW_INLIERS, JUMP, MIN_MATCHES, NO_MATCHES, OK


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    keep = (weights > 0) & np.isfinite(values)
    if not keep.any():
        return float("nan") if not (weights > 0).any() else float("inf")
    v, w = values[keep], weights[keep]
    order = np.argsort(v)
    cum = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cum, 0.5 * cum[-1])])


def frame_evidence(err_px, inlier, w):
    """Per frame: weighted median error over every weighted match (behind the camera = inf) and the
    weighted inlier share."""
    match_error = np.array([weighted_median(e, wt) for e, wt in zip(err_px, w)])
    total = w.sum(1)
    share = np.where(total > 0, (w * inlier).sum(1) / np.where(total > 0, total, 1.0), 0.0)
    return match_error, share


def jumps(R, t, share, cfg) -> np.ndarray:
    """Frames reached by a pose step far larger than the clip's typical step (rotation or camera
    centre) that the matches do not back: one side of the step has under 60% inliers."""
    T = len(R)
    out = np.zeros(T, bool)
    if T < 3:
        return out
    angle = np.degrees(np.linalg.norm(rotation_log(R[1:] @ np.swapaxes(R[:-1], -1, -2)), axis=-1))
    centre = -np.einsum("tji,tj->ti", R, t)
    distance = np.median(np.linalg.norm(centre, axis=-1))
    move = np.linalg.norm(np.diff(centre, axis=0), axis=-1) / max(distance, 1e-12)
    big = (angle > max(cfg.jump_deg, 4 * np.median(angle))) | (move > max(cfg.jump_distance, 4 * np.median(move)))
    weak = np.minimum(share[:-1], share[1:]) < 0.6
    out[1:] = big & weak
    return out


def frame_status(active, inliers, share, jump, cfg) -> list[str]:
    out = []
    for a, n, s, j in zip(active, inliers, share, jump):
        if not a:
            out.append(NO_MATCHES)
        elif n < MIN_MATCHES or s < cfg.min_frame_inliers:
            out.append(FEW_INLIERS)
        else:
            out.append(JUMP if j else OK)
    return out


def object_extent(X, w) -> tuple[float, np.ndarray | None]:
    """Robust radius of the matched 3D points (90th percentile distance from their median) and
    that median."""
    pts = X[w > 0]
    if len(pts) < 2:
        return float("nan"), None
    centre = np.median(pts, 0)
    return float(np.percentile(np.linalg.norm(pts - centre, axis=-1), 90)), centre


def status_warnings(status: list[str]) -> list[str]:
    out = []
    for kind, text in ((FEW_INLIERS, "too few matches consistent with the camera"),
                       (JUMP, "a pose jump the matches do not support")):
        frames = [i for i, s in enumerate(status) if s == kind]
        if frames:
            out.append(f"camera: frame(s) {_ranges(frames)} have {text}")
    return out


def _ranges(frames: list[int]) -> str:
    parts, start = [], frames[0]
    for a, b in zip(frames, frames[1:] + [None]):
        if b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(parts)
