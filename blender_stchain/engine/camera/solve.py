"""Public solve: clean the matches, start robustly, refine, report; long clips in chunks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import quality
from .geometry import project, rigid
from .initial import (
    classify_frames,
    default_pose,
    fill_from_neighbours,
    focal_frames,
    pose_errors,
    propagate_pose,
    ransac,
)
from .interval import focal_interval
from .models import Pinhole
from .refine import Problem, levenberg_marquardt
from .silhouette import Silhouette
from .solution import FOCAL_FRAMES, MIN_MATCHES, CameraSolution, SolveSettings


POLISH_SCALE = 1e6  # a Cauchy scale this large is least squares


def _settings(settings: dict) -> SolveSettings:
    names = set(SolveSettings.__dataclass_fields__)
    unknown = set(settings) - names
    if unknown:
        raise ValueError(f"unknown camera setting(s) {sorted(unknown)}; known: {sorted(names)}")
    return SolveSettings(**settings)


def _clean(points3d, points2d, weights, uncertainty_px=None):
    X = np.asarray(points3d, np.float64)
    uv = np.asarray(points2d, np.float64)
    w = np.asarray(weights, np.float64)
    sigma = np.ones(w.shape) if uncertainty_px is None else np.asarray(uncertainty_px, np.float64)
    if X.ndim != 3 or X.shape[-1] != 3 or uv.shape != X.shape[:2] + (2,) or w.shape != X.shape[:2]:
        raise ValueError(
            f"camera.solve needs points3d (T,M,3), points2d (T,M,2), weights (T,M); got "
            f"{X.shape}, {uv.shape}, {w.shape}"
        )
    if sigma.shape != w.shape:
        raise ValueError(f"camera.solve needs uncertainty_px (T,M) like the weights; got {sigma.shape}")
    finite = np.isfinite(X).all(-1) & np.isfinite(uv).all(-1) & np.isfinite(w) & np.isfinite(sigma) & (sigma > 0)
    w = np.where(finite, np.maximum(w, 0.0), 0.0)
    sigma = np.where(finite, sigma, 1.0)
    return np.where(finite[..., None], X, 0.0), np.where(finite[..., None], uv, 0.0), w, sigma


def _checked_silhouette(sil: Silhouette, T: int, image_size) -> Silhouette:
    P, D = np.asarray(sil.points, np.float64), np.asarray(sil.distance, np.float64)
    W, H = image_size
    h, w = int(np.ceil(H / sil.scale)), int(np.ceil(W / sil.scale))
    if P.ndim != 3 or P.shape[0] != T or P.shape[2] != 3 or D.shape != (T, h, w):
        raise ValueError(
            f"silhouette needs points (T,B,3) and distance fields (T,H,W) = ({T},{h},{w}); "
            f"got {P.shape} and {D.shape}"
        )
    return Silhouette(P, D, float(sil.weight), float(sil.scale))


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


def _initial_poses(X, uv, w, sigma, good, models, threshold, cfg, image_size):
    """Camera model and per-frame poses from RANSAC; the rest filled from neighbours. Focal
    candidates are compared on a few frames spread over the clip, then the winner runs on all."""
    if not good.any():
        model = models[len(models) // 2]
        R, t = zip(*(default_pose(X[f], w[f], model.focal, image_size) for f in range(len(X))))
        return model, np.stack(R), np.stack(t)
    rng = np.random.default_rng(cfg.seed)
    pick = focal_frames(good, FOCAL_FRAMES) if len(models) > 1 else good
    trials = [ransac(m, X, uv, w, sigma, pick, threshold, cfg.ransac_hypotheses, rng) for m in models]
    best = int(np.argmin([costs[pick].sum() for _, _, costs in trials]))
    model, (R, t, cost) = models[best], trials[best]
    rest = good & ~pick
    if rest.any():
        R2, t2, cost2 = ransac(model, X, uv, w, sigma, rest, threshold, cfg.ransac_hypotheses, rng)
        R, t, cost = np.where(rest[:, None, None], R2, R), np.where(rest[:, None], t2, t), np.where(rest, cost2, cost)
    R, t = propagate_pose(model, X, uv, w, sigma, good, threshold, R, t, cost)
    return model, *fill_from_neighbours(R, t, good)


def _refine(prob, model, R, t, threshold, cfg, silhouette):
    """Cauchy LM with the scale annealed from the RANSAC threshold (a rough start cannot lock onto
    outliers), then least squares on the inliers, then the silhouette term if given."""
    scale = max(threshold, cfg.robust_scale_px)
    while True:
        model, R, t = levenberg_marquardt(prob, model, R, t, scale, cfg.iterations)
        if scale <= cfg.robust_scale_px:
            break
        scale = max(cfg.robust_scale_px, scale / 2)
    w = prob.w
    last = replace(prob), scale  # the cost the solve minimised last: the focal interval profiles it
    if cfg.polish:  # efficient for Gaussian noise; 3.5 holds 99.8% of unit 2D Gaussian noise at the default scale
        prob.w = w * (pose_errors(model, R, t, prob.X, prob.uv, prob.sigma) < 1.75 * cfg.robust_scale_px)
        model, R, t = levenberg_marquardt(prob, model, R, t, POLISH_SCALE, cfg.iterations)
        last = replace(prob), POLISH_SCALE
        prob.w = w
    if silhouette is not None:
        prob.silhouette = silhouette
        model, R, t = levenberg_marquardt(prob, model, R, t, scale, cfg.iterations)
        last = replace(prob), scale
    return model, R, t, last


def _models(W, H, focal_px, cfg, initial):
    free = focal_px is None
    c = (W / 2, H / 2)
    if initial is not None:
        K = initial.K
        c = (float(K[0, 2]), float(K[1, 2])) if cfg.solve_principal_point else c
        return [Pinhole(float(focal_px or K[0, 0]), *c, free, cfg.solve_principal_point)]
    if focal_px is not None:
        return [Pinhole(float(focal_px), *c, False, cfg.solve_principal_point)]
    fov = np.radians(np.asarray(cfg.focal_fov_deg, np.float64))
    return [Pinhole(float(f), *c, True, cfg.solve_principal_point) for f in 0.5 * W / np.tan(fov / 2)]


def solve(
    points3d, points2d, weights, image_size, focal_px=None, silhouette: Silhouette | None = None,
    uncertainty_px=None, initial: CameraSolution | None = None, **settings
) -> CameraSolution:
    """Shared intrinsics and per-frame OpenCV poses from 2D-3D matches (weights 0 = no match).

    ``focal_px`` fixes the focal length (footage pixels); otherwise it is solved. The principal
    point stays at the image centre unless ``solve_principal_point=True``. ``silhouette`` (boundary
    points + mask distance fields) adds the outline term to the final refinement. ``uncertainty_px``
    (T, M): each match's uncertainty in footage pixels; every threshold then scales with it.
    ``initial``: a previous solution to refine instead of starting from RANSAC.
    """
    cfg = _settings(settings)
    X, uv, w, sigma = _clean(points3d, points2d, weights, uncertainty_px)
    W, H = (float(v) for v in image_size)
    if silhouette is not None:
        silhouette = _checked_silhouette(silhouette, len(X), (W, H))
    kinds = classify_frames(X, w, cfg.coplanar_ratio)
    warnings = _degenerate_warnings(kinds)
    good = np.array([k == "ok" for k in kinds])
    active = np.array([k != "few" for k in kinds])
    models = _models(W, H, focal_px, cfg, initial)
    threshold = cfg.ransac_threshold_sigma if uncertainty_px is not None else cfg.ransac_threshold_px * max(W, H)
    if initial is not None:
        model, R, t = models[0], initial.world_to_camera[:, :3, :3].copy(), initial.world_to_camera[:, :3, 3].copy()
    else:
        if not good.any():
            warnings.append("camera: no frame has a linear pose; started from a default view")
        model, R, t = _initial_poses(X, uv, w, sigma, good, models, threshold, cfg, (W, H))
    interval = None
    if active.any():
        prob = Problem(X, uv, w, active, cfg.smoothness, None if uncertainty_px is None else sigma)
        model, R, t, (last, scale) = _refine(prob, model, R, t, threshold, cfg, silhouette)
        if model.free_focal and cfg.focal_interval:
            interval = focal_interval(last, model, R, t, scale)
        R, t = fill_from_neighbours(R, t, active)
    searched = None if focal_px is not None or initial is not None else (models[0].focal, models[-1].focal)
    typical = 1.0 if uncertainty_px is None else float(np.median(sigma[w > 0])) if (w > 0).any() else 1.0
    return _report(Fit(model, rigid(R, t), active), Cleaned(X, uv, w, sigma), cfg, (W, H), warnings,
                   Scope(searched, interval, typical))


@dataclass(frozen=True)
class Cleaned:
    """The matches a solve used: 3D points, pixels, weights (0 = none) and uncertainties, (T, M, ...)."""

    X: np.ndarray
    uv: np.ndarray
    w: np.ndarray
    sigma: np.ndarray


@dataclass(frozen=True)
class Fit:
    model: Pinhole
    world_to_camera: np.ndarray  # (T, 4, 4)
    active: np.ndarray  # (T,) frames with enough matches to be solved


@dataclass(frozen=True)
class Scope:
    """What a solve can say about its focal: the range it searched (None: given), the 95% interval
    (None: given or not profiled) and the typical match uncertainty its thresholds were scaled by."""

    searched: tuple[float, float] | None
    interval: tuple[float, float] | None
    typical_sigma_px: float


def _report(fit: Fit, m: Cleaned, cfg, size, warnings: list[str], scope: Scope) -> CameraSolution:
    """The solution with its evidence: errors over every weighted match, inliers and a status per frame."""
    K, w2c, X, uv, w, sigma = fit.model.K, fit.world_to_camera, m.X, m.uv, m.w, m.sigma
    err = np.linalg.norm(project(K, w2c, X) - uv, axis=-1)
    err = np.where(np.isnan(err), np.inf, err)
    inlier = (w > 0) & (err < cfg.inlier_px * sigma)
    median = np.array([np.median(e[v]) if v.any() else np.nan for e, v in zip(err, inlier)])
    match_error, share = quality.frame_evidence(err, inlier, w)
    jumps = quality.jumps(w2c[:, :3, :3], w2c[:, :3, 3], share, cfg)
    status = quality.frame_status(fit.active, inlier.sum(1), share, jumps, cfg)
    radius, centre = quality.object_extent(X, w)
    return CameraSolution(
        K=K, world_to_camera=w2c, reprojection_error_px=median, inliers=inlier.sum(1),
        image_size=tuple(int(v) for v in size), warnings=warnings + quality.status_warnings(status),
        match_error_px=match_error, inlier_share=share, frame_status=status,
        focal_range=None if scope.searched is None else (min(scope.searched), max(scope.searched)),
        object_radius=radius, object_centre=centre, match_sigma_px=scope.typical_sigma_px,
        focal_interval=scope.interval)


def _rows(a, lo, hi):
    return None if a is None else a[lo:hi]


def _part(sol: CameraSolution | None, lo: int, hi: int) -> CameraSolution | None:
    if sol is None:
        return None
    return CameraSolution(K=sol.K, world_to_camera=sol.world_to_camera[lo:hi],
                          reprojection_error_px=sol.reprojection_error_px[lo:hi], inliers=sol.inliers[lo:hi],
                          image_size=sol.image_size)


def solve_long(points3d, points2d, weights, image_size, focal_px=None, chunk: int = 128, overlap: int = 16,
               progress=None, uncertainty_px=None, initial: CameraSolution | None = None, silhouette=None,
               **settings) -> CameraSolution:
    """``solve`` with memory and time flat in clip length: the focal length comes from the first
    ``chunk`` frames, then poses are solved ``chunk`` frames at a time with that focal length fixed;
    overlapping chunks keep the temporal smoothness across their borders (each frame's pose comes
    from the chunk where it lies furthest from a border). ``progress(done, total)`` after each chunk
    (frames; it may raise to cancel). ``silhouette(lo, hi)`` builds the silhouette term of frames
    lo..hi (or None), so distance fields exist for one chunk at a time."""
    T = len(points3d)
    progress = progress or (lambda done, total: None)
    silhouette = silhouette or (lambda lo, hi: None)

    def part(lo, hi, focal):
        return solve(points3d[lo:hi], points2d[lo:hi], weights[lo:hi], image_size, focal_px=focal,
                     silhouette=silhouette(lo, hi), uncertainty_px=_rows(uncertainty_px, lo, hi),
                     initial=_part(initial, lo, hi), **settings)

    if T <= chunk:
        sol = part(0, T, focal_px)
        progress(T, T)
        return sol
    first = part(0, chunk, focal_px)
    focal = float(first.K[0, 0])
    w2c, err, inliers = np.empty((T, 4, 4)), np.empty(T), np.empty(T, np.int64)
    match_error, share, status, warnings = np.empty(T), np.empty(T), [quality.OK] * T, []
    step = chunk - 2 * overlap
    for a in range(0, T, step):
        lo, hi = max(0, a - overlap), min(T, a + step + overlap)
        sol = first if a == 0 else part(lo, hi, focal)
        keep, rows = slice(a - lo, min(a + step, T) - lo), slice(a, min(a + step, T))
        w2c[rows], err[rows], inliers[rows] = sol.world_to_camera[keep], sol.reprojection_error_px[keep], \
            sol.inliers[keep]
        match_error[rows], share[rows], status[rows] = sol.match_error_px[keep], sol.inlier_share[keep], \
            sol.frame_status[keep]
        own = quality.status_warnings(sol.frame_status)  # chunk-local frame numbers: rebuilt below
        warnings += [w for w in sol.warnings if w not in warnings and w not in own]
        progress(min(a + step, T), T)
    jump = quality.jumps(w2c[:, :3, :3], w2c[:, :3, 3], share, _settings(settings))
    status = [quality.JUMP if j and s == quality.OK else s for s, j in zip(status, jump)]
    return replace(first, world_to_camera=w2c, reprojection_error_px=err, inliers=inliers,
                   warnings=warnings + quality.status_warnings(status), match_error_px=match_error,
                   inlier_share=share, frame_status=status)  # intrinsics and their scope: the first chunk's
