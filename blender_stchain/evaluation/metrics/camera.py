"""Camera errors of a result against ground truth, independent of how the result splits motion.

A monocular clip of a moving object fixes, per frame, only the camera *relative to the object*:
a result may move the object where the ground truth moves the camera ("object moves" versus
"camera moves"), and its object space has its own position, orientation and scale. ActionBench
defines no camera metric, so this definition is ours:

- pairs: each GT point is paired with a predicted vertex by the caller (``scoring.match_vertices``:
  ActionBench's frame-0 alignment refined by a similarity ICP, then nearest neighbours);
- the object's rigid pose per frame, G(t), is the Kabsch fit of its paired points at t to those at
  frame 0, on each side; the camera seen from the object is then C(t) = world_to_camera(t) @ G(t);
- one similarity S (Umeyama 1991, with scale) maps the predicted frame-0 points onto the GT's;
- focal error: |f - f_gt| / f_gt; rotation error: the geodesic angle between the rotations of
  C_gt(t) and C(t) S^-1 (degrees, mean over frames); centre error: the distance between the camera
  centres in the GT's frame-0 object space, divided by the GT object's bounding-box diagonal (mean);
- reprojection: the predicted paired vertices projected with the predicted camera against the GT
  2D positions, GT-visible points only (pixels, mean). It needs no alignment at all: it is the
  "does the mesh line up with the footage" number.
"""

from __future__ import annotations

import numpy as np


def umeyama(src, dst) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 over point pairs (N, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, D, Vt = np.linalg.svd(b.T @ a / len(src))
    E = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ E @ Vt
    var = (a**2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ E) / var) if var > 0 else 1.0
    return s, R, md - s * R @ ms


def kabsch_poses(points) -> np.ndarray:
    """Rigid poses (T, 4, 4) taking frame-0 points onto each frame's (T, N, 3)."""
    P = np.asarray(points, np.float64)
    out = np.tile(np.eye(4), (len(P), 1, 1))
    for t, Pt in enumerate(P):
        R = umeyama(P[0], Pt)[1]  # the rotation of the similarity is Kabsch's
        out[t, :3, :3], out[t, :3, 3] = R, Pt.mean(0) - R @ P[0].mean(0)
    return out


def rotation_angle_deg(Ra, Rb) -> np.ndarray:
    """Geodesic angle between rotation stacks (..., 3, 3), degrees."""
    cos = (np.trace(np.swapaxes(Ra, -1, -2) @ Rb, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def project(K, w2c, points) -> np.ndarray:
    """Pixels (T, N, 2) of points (T, N, 3); NaN behind the camera."""
    cam = np.einsum("tij,tnj->tni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    uv = cam @ np.asarray(K, np.float64).T
    return uv[..., :2] / np.where(uv[..., 2:] > 0, uv[..., 2:], np.nan)


def camera_errors(K, w2c, pred_points, K_gt, w2c_gt, gt_points, gt_xy, gt_visible) -> dict:
    """Camera metrics from paired points: predicted (T, N, 3) in the result's space, GT (T, N, 3)
    in the GT world, GT pixels (T, N, 2) and visibility (T, N)."""
    K, w2c, K_gt, w2c_gt = (np.asarray(a, np.float64) for a in (K, w2c, K_gt, w2c_gt))
    P, Q = np.asarray(pred_points, np.float64), np.asarray(gt_points, np.float64)
    C_pred = w2c @ kabsch_poses(P)
    C_gt = w2c_gt @ kabsch_poses(Q)
    s, R_s, t_s = umeyama(P[0], Q[0])
    rot = rotation_angle_deg(C_gt[:, :3, :3], C_pred[:, :3, :3] @ R_s.T)
    centre_pred = -np.einsum("tji,tj->ti", C_pred[:, :3, :3], C_pred[:, :3, 3])  # frame-0 object space
    centre_pred = s * centre_pred @ R_s.T + t_s
    centre_gt = -np.einsum("tji,tj->ti", C_gt[:, :3, :3], C_gt[:, :3, 3])
    diag = float(np.linalg.norm(Q[0].max(0) - Q[0].min(0)))
    err_px = np.linalg.norm(project(K, w2c, P) - np.asarray(gt_xy, np.float64), axis=-1)
    seen = np.asarray(gt_visible, bool)
    reproj = np.where(np.isnan(err_px), np.inf, err_px)[seen]
    return {
        "focal_error": float(abs(K[0, 0] - K_gt[0, 0]) / K_gt[0, 0]),
        "rotation_deg": float(rot.mean()),
        "centre_error": float(np.linalg.norm(centre_pred - centre_gt, axis=1).mean() / max(diag, 1e-12)),
        "reprojection_px": float(np.mean(reproj)) if reproj.size else float("nan"),
        "similarity_scale": float(s),
    }
