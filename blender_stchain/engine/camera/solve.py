"""Public solve: clean the matches, start robustly, refine, report; long clips in chunks."""

from __future__ import annotations

import numpy as np

from .geometry import intrinsics, project, rigid
from .initial import (
    classify_frames,
    default_pose,
    fill_from_neighbours,
    pose_errors,
    propagate_pose,
    ransac,
)
from .refine import Problem, levenberg_marquardt
from .silhouette import Silhouette
from .solution import MIN_MATCHES, CameraSolution, SolveSettings


def _settings(settings: dict) -> SolveSettings:
    names = set(SolveSettings.__dataclass_fields__)
    unknown = set(settings) - names
    if unknown:
        raise ValueError(f"unknown camera setting(s) {sorted(unknown)}; known: {sorted(names)}")
    return SolveSettings(**settings)


def _clean(points3d, points2d, weights):
    X = np.asarray(points3d, np.float64)
    uv = np.asarray(points2d, np.float64)
    w = np.asarray(weights, np.float64)
    if X.ndim != 3 or X.shape[-1] != 3 or uv.shape != X.shape[:2] + (2,) or w.shape != X.shape[:2]:
        raise ValueError(
            f"camera.solve needs points3d (T,M,3), points2d (T,M,2), weights (T,M); got "
            f"{X.shape}, {uv.shape}, {w.shape}"
        )
    finite = np.isfinite(X).all(-1) & np.isfinite(uv).all(-1) & np.isfinite(w)
    w = np.where(finite, np.maximum(w, 0.0), 0.0)
    return np.where(finite[..., None], X, 0.0), np.where(finite[..., None], uv, 0.0), w


def _checked_silhouette(sil: Silhouette, T: int, image_size) -> Silhouette:
    P, D = np.asarray(sil.points, np.float64), np.asarray(sil.distance, np.float64)
    W, H = image_size
    if P.ndim != 3 or P.shape[0] != T or P.shape[2] != 3 or D.shape != (T, int(H), int(W)):
        raise ValueError(
            f"silhouette needs points (T,B,3) and distance fields (T,H,W) = ({T},{int(H)},{int(W)}); "
            f"got {P.shape} and {D.shape}"
        )
    return Silhouette(P, D, float(sil.weight))


def _degenerate_warnings(kinds) -> list[str]:
    out = []
    for kind, text in (
        ("few", f"fewer than {MIN_MATCHES} valid matches"),
        ("coplanar", "all 3D points coplanar (no linear pose)"),
    ):
        frames = [i for i, k in enumerate(kinds) if k == kind]
        if frames:
            how = "interpolated from neighbouring frames" if kind == "few" else "started from neighbouring frames"
            out.append(f"camera: frame(s) {frames} have {text}; their pose was {how}")
    return out


def _initial_poses(X, uv, w, good, candidates, c, threshold, cfg, image_size):
    """Focal candidate and per-frame poses from RANSAC; the rest filled from neighbours."""
    if not good.any():
        focal = float(np.median(candidates))
        R, t = zip(*(default_pose(X[f], w[f], focal, image_size) for f in range(len(X))))
        return focal, np.stack(R), np.stack(t)
    rng = np.random.default_rng(cfg.seed)
    Rs, ts, costs = ransac(X, uv, w, good, candidates, c, threshold, cfg.ransac_hypotheses, rng)
    best = int(np.argmin(costs[:, good].sum(1)))
    focal = candidates[best]
    R, t = propagate_pose(X, uv, w, good, focal, c, threshold, Rs[best], ts[best], costs[best])
    return focal, *fill_from_neighbours(R, t, good)


def _refine(prob, focal, c, R, t, threshold, cfg, silhouette):
    """Cauchy LM with the scale annealed from the RANSAC threshold (a rough start cannot lock onto
    outliers), then least squares on the inliers, then the silhouette term if given."""
    scale = max(threshold, cfg.robust_scale_px)
    while True:
        focal, c, R, t = levenberg_marquardt(prob, focal, c, R, t, scale, cfg.iterations)
        if scale <= cfg.robust_scale_px:
            break
        scale = max(cfg.robust_scale_px, scale / 2)
    w = prob.w
    if cfg.polish:  # efficient for Gaussian noise; 3.5 px holds 99.8% of unit 2D Gaussian noise at the default scale
        prob.w = w * (pose_errors(focal, c, R, t, prob.X, prob.uv) < 1.75 * cfg.robust_scale_px)
        focal, c, R, t = levenberg_marquardt(prob, focal, c, R, t, 1e6, cfg.iterations)
        prob.w = w
    if silhouette is not None:
        prob.silhouette = silhouette
        focal, c, R, t = levenberg_marquardt(prob, focal, c, R, t, scale, cfg.iterations)
    return focal, c, R, t


def solve(
    points3d, points2d, weights, image_size, focal_px=None, silhouette: Silhouette | None = None, **settings
) -> CameraSolution:
    """Shared intrinsics and per-frame OpenCV poses from 2D-3D matches (weights 0 = no match).

    ``focal_px`` fixes the focal length (footage pixels); otherwise it is solved. The principal
    point stays at the image centre unless ``solve_principal_point=True``. ``silhouette`` (boundary
    points + mask distance fields) adds the outline term to the final refinement.
    """
    cfg = _settings(settings)
    X, uv, w = _clean(points3d, points2d, weights)
    W, H = (float(v) for v in image_size)
    c = np.array([W / 2, H / 2])
    if silhouette is not None:
        silhouette = _checked_silhouette(silhouette, len(X), (W, H))
    kinds = classify_frames(X, w, cfg.coplanar_ratio)
    warnings = _degenerate_warnings(kinds)
    good = np.array([k == "ok" for k in kinds])
    active = np.array([k != "few" for k in kinds])
    if focal_px is not None:
        candidates = np.array([float(focal_px)])
    else:
        candidates = 0.5 * W / np.tan(np.radians(np.asarray(cfg.focal_fov_deg, np.float64)) / 2)
    threshold = cfg.ransac_threshold_px * max(W, H)
    if not good.any():
        warnings.append("camera: no frame has a linear pose; started from a default view")
    focal, R, t = _initial_poses(X, uv, w, good, candidates, c, threshold, cfg, (W, H))
    if active.any():
        prob = Problem(X, uv, w, active, focal_px is None, cfg.solve_principal_point, cfg.smoothness)
        focal, c, R, t = _refine(prob, focal, c, R, t, threshold, cfg, silhouette)
        R, t = fill_from_neighbours(R, t, active)
    K = intrinsics(focal, *c)
    w2c = rigid(R, t)
    err = np.linalg.norm(project(K, w2c, X) - uv, axis=-1)
    err = np.where(np.isnan(err), np.inf, err)
    inlier = (w > 0) & (err < cfg.inlier_px)
    median = np.array([np.median(e[v]) if v.any() else np.nan for e, v in zip(err, inlier)])
    return CameraSolution(
        K=K,
        world_to_camera=w2c,
        reprojection_error_px=median,
        inliers=inlier.sum(1),
        image_size=(int(W), int(H)),
        warnings=warnings,
    )


def solve_long(points3d, points2d, weights, image_size, focal_px=None, chunk: int = 96, overlap: int = 16,
               progress=None, **settings) -> CameraSolution:
    """``solve`` with memory and time flat in clip length: the focal length comes from the first
    ``chunk`` frames, then poses are solved ``chunk`` frames at a time with that focal length fixed;
    overlapping chunks keep the temporal smoothness across their borders (each frame's pose comes
    from the chunk where it lies furthest from a border). ``progress(done, total)`` after each chunk
    (frames; it may raise to cancel)."""
    T = len(points3d)
    progress = progress or (lambda done, total: None)
    if T <= chunk:
        sol = solve(points3d, points2d, weights, image_size, focal_px=focal_px, **settings)
        progress(T, T)
        return sol
    first = solve(points3d[:chunk], points2d[:chunk], weights[:chunk], image_size, focal_px=focal_px, **settings)
    focal = float(first.K[0, 0])
    w2c, err, inliers, warnings = (np.empty((T, 4, 4)), np.empty(T), np.empty(T, np.int64), list(first.warnings))
    step = chunk - 2 * overlap
    for a in range(0, T, step):
        lo, hi = max(0, a - overlap), min(T, a + step + overlap)
        part = first if a == 0 else solve(points3d[lo:hi], points2d[lo:hi], weights[lo:hi], image_size,
                                          focal_px=focal, **settings)
        keep = slice(a - lo, min(a + step, T) - lo)
        w2c[a:a + step], err[a:a + step] = part.world_to_camera[keep], part.reprojection_error_px[keep]
        inliers[a:a + step] = part.inliers[keep]
        warnings += [w for w in part.warnings if w not in warnings]
        progress(min(a + step, T), T)
    return CameraSolution(first.K, w2c, err, inliers, first.image_size, warnings)
