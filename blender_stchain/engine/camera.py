"""Camera from 2D-3D matches: one pinhole intrinsic set per clip and a pose per frame.

Conventions (OpenCV): ``world_to_camera`` maps object-space points to camera space with x right,
y down, z forward (points in front have z > 0). Pixel coordinates are continuous with the origin at
the top-left *corner* of the image, so pixel (i, j) has its centre at (i + 0.5, j + 0.5) and the
image centre is exactly (W / 2, H / 2); this is the convention Blender's camera frame uses too.

The solve is robust: a calibrated DLT inside RANSAC over a few focal candidates gives the start,
then Levenberg-Marquardt with a Cauchy loss (IRLS, scale annealed) refines every pose and the shared
intrinsics together, with an optional second-difference smoothness prior on the poses and an
optional silhouette term. Frames that cannot be solved alone (too few matches, coplanar points)
are reported in ``warnings`` and get their pose from their neighbours instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

MIN_MATCHES = 6  # a calibrated DLT needs 6 points in general position
BEHIND_COST = 1e9  # cost of a matched point behind the camera
RANSAC_ELEMENTS = 500_000  # working set of one RANSAC chunk: ~90 MB
SCORE_MATCHES = 256  # RANSAC hypotheses are scored on this many random matches per frame


@dataclass
class CameraSolution:
    """Solved camera: ``K`` in footage pixels, OpenCV ``world_to_camera`` per frame."""

    K: np.ndarray  # (3, 3)
    world_to_camera: np.ndarray  # (T, 4, 4)
    reprojection_error_px: np.ndarray  # (T,) median error of the frame's inliers (NaN: none)
    inliers: np.ndarray  # (T,) valid matches within ``inlier_px`` of their projection
    image_size: tuple[int, int]  # (W, H)
    warnings: list[str] = field(default_factory=list)


def plausible(solution: CameraSolution, min_inlier_share: float = 0.2, fov_deg=(5.0, 140.0)) -> str | None:
    """Why a solution cannot be trusted (None when it can): non-finite, few inliers, absurd focal."""
    W, H = solution.image_size
    if not (np.isfinite(solution.K).all() and np.isfinite(solution.world_to_camera).all()):
        return "the solve did not converge"
    fov = np.degrees(2 * np.arctan(0.5 * max(W, H) / solution.K[0, 0]))
    if not fov_deg[0] <= fov <= fov_deg[1]:
        return f"the solved field of view ({fov:.1f} deg) is implausible"
    share = float(np.mean(np.nan_to_num(solution.reprojection_error_px, nan=np.inf) < np.inf))
    if share < min_inlier_share:
        return f"only {share:.0%} of the frames have consistent 2D-3D matches"
    return None


def default_camera(num_frames: int, image_size, fov_deg: float = 40.0, margin: float = 1.3) -> CameraSolution:
    """A front camera framing the backbone's [-1, 1] object cube (object y-up, looking down -z)."""
    W, H = image_size
    f = 0.5 * max(W, H) / np.tan(np.radians(fov_deg) / 2)
    distance = margin * f / (0.5 * min(W, H)) + 1.0
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    w2c = np.eye(4)
    w2c[:3, :3] = np.diag([1.0, -1.0, -1.0])
    w2c[2, 3] = distance
    return CameraSolution(K, np.repeat(w2c[None], num_frames, 0), np.full(num_frames, np.nan),
                          np.zeros(num_frames, np.int64), (int(W), int(H)))


@dataclass
class ObjectMotion:
    """Per-frame rigid motion of the object: ``vertices[t] ~= R[t] @ anchor + t[t]``."""

    matrices: np.ndarray  # (T, 4, 4) anchor -> frame t
    rms: np.ndarray  # (T,) weighted RMS of what the rigid fit leaves (the deformation)


@dataclass(frozen=True)
class SolveSettings:
    focal_fov_deg: tuple[float, ...] = (20, 30, 40, 50, 60, 75, 90, 110)  # focal candidates (horizontal FOV)
    ransac_hypotheses: int = 96  # 6-point samples per frame and focal candidate
    ransac_threshold_px: float = 0.01  # MSAC threshold, as a share of max(W, H)
    robust_scale_px: float = 2.0  # final Cauchy scale of the reprojection loss
    inlier_px: float = 4.0  # error under which a match counts as an inlier (reporting)
    iterations: int = 40  # LM iterations per Cauchy scale
    smoothness: float = 0.1  # weight of the second-difference pose prior (0 = off)
    solve_principal_point: bool = False  # principal point free instead of the image centre
    coplanar_ratio: float = 1e-3  # smallest / largest spread of the 3D points below this = coplanar
    polish: bool = True  # finish with least squares on the inliers of the robust solve
    seed: int = 0


# ----------------------------------------------------------------------------- rotations


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


# ----------------------------------------------------------------------------- projection


def intrinsics(focal: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


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


# ----------------------------------------------------------------------------- linear start


def _dlt_rows(xn: np.ndarray, X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rows of the calibrated DLT system, weighted: (..., 2N, 12)."""
    Xh = np.concatenate([X, np.ones_like(X[..., :1])], -1)
    zero = np.zeros_like(Xh)
    r1 = np.concatenate([-Xh, zero, xn[..., :1] * Xh], -1)
    r2 = np.concatenate([zero, -Xh, xn[..., 1:2] * Xh], -1)
    return np.concatenate([r1, r2], -2) * np.concatenate([w, w], -1)[..., None]


def _dlt_pose(xn: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched calibrated DLT: normalised image points (..., N, 2) and 3D points -> (R, t)."""
    wsum = np.maximum(w.sum(-1, keepdims=True), 1e-12)
    mu = (X * w[..., None]).sum(-2, keepdims=True) / wsum[..., None]
    sigma = np.sqrt((((X - mu) ** 2).sum(-1) * w).sum(-1) / wsum[..., 0]) + 1e-12
    Xn = (X - mu) / sigma[..., None, None]
    A = _dlt_rows(xn, Xn, w)
    _, vecs = np.linalg.eigh(np.swapaxes(A, -1, -2) @ A)
    P = vecs[..., :, 0].reshape(A.shape[:-2] + (3, 4))  # null vector: smallest eigenvalue
    # undo the normalisation: P_world = P_n @ [[I/s, -mu/s], [0, 1]]
    M = P[..., :3] / sigma[..., None, None]
    p4 = P[..., 3] - (M @ mu[..., 0, :, None])[..., 0]
    sign = np.sign(np.linalg.det(M))[..., None]
    sign = np.where(sign == 0, 1.0, sign)
    M, p4 = M * sign[..., None], p4 * sign
    scale = np.linalg.svd(M, compute_uv=False).mean(-1, keepdims=True)
    return nearest_rotation(M), p4 / np.maximum(scale, 1e-12)


def _affine_pose(xn: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched scaled-orthographic pose: stable where the DLT is not (small, distant objects).

    Fits xn ~= A (X - mu) + b by weighted least squares; the two rows of A are the first two
    rows of R over the depth Z0 of the centroid, so R = nearest rotation, Z0 = 1 / row scale.
    """
    wsum = np.maximum(w.sum(-1, keepdims=True), 1e-12)
    mu = (X * w[..., None]).sum(-2, keepdims=True) / wsum[..., None]
    Xc = X - mu
    xm = (xn * w[..., None]).sum(-2, keepdims=True) / wsum[..., None]
    cov = np.swapaxes(Xc * w[..., None], -1, -2) @ Xc + 1e-12 * np.eye(3)
    A = np.swapaxes(np.linalg.solve(cov, np.swapaxes(Xc * w[..., None], -1, -2) @ (xn - xm)), -1, -2)
    U, S, Vt = np.linalg.svd(A, full_matrices=False)  # (..., 2, 3) -> orthonormal rows U @ Vt
    rows = U @ Vt
    R = np.concatenate([rows, np.cross(rows[..., 0, :], rows[..., 1, :])[..., None, :]], -2)
    depth = 1.0 / np.maximum(S.mean(-1), 1e-12)
    centre = np.concatenate([xm[..., 0, :] * depth[..., None], depth[..., None]], -1)
    return R, centre - (R @ mu[..., 0, :, None])[..., 0]


def _errors(focal, c, R, t, X, uv):
    """Reprojection error (px) for any batch shape; points behind the camera count as infinite."""
    cam = X @ np.swapaxes(R, -1, -2) + t[..., None, :]
    z = cam[..., 2:3]
    proj = np.asarray(focal)[..., None, None] * cam[..., :2] / np.where(z > 1e-9, z, 1e-9) + c
    return np.where(z[..., 0] > 1e-9, np.linalg.norm(proj - uv, axis=-1), np.inf)


def _msac(err, w, threshold):
    return (np.minimum(err, threshold) ** 2 * w).sum(-1)


def _ransac(X, uv, w, good, foc, c, threshold, hypotheses, rng):
    """Best (R, t, MSAC cost) per focal candidate and frame, for frames in ``good``.

    Hypotheses are calibrated DLTs and scaled-orthographic fits of 6 distinct valid matches, scored
    on a random subset of ``SCORE_MATCHES`` matches; the best one per frame and candidate is then
    refitted on its inliers among all matches (local optimisation, kept only where it helps).
    """
    T, M = w.shape
    C, S = len(foc), min(M, SCORE_MATCHES)
    Rs, ts, costs = np.tile(np.eye(3), (C, T, 1, 1)), np.zeros((C, T, 3)), np.full((C, T), np.inf)
    frames = np.flatnonzero(good)
    # Fixed-size frame chunks bound the (C, frames, H, S) arrays (~180 bytes per element) the same
    # way for every clip length.
    per_chunk = max(1, RANSAC_ELEMENTS // (C * hypotheses * S))
    for chunk in (frames[a:a + per_chunk] for a in range(0, len(frames), per_chunk)):
        Xc, uvc, wc = X[chunk], uv[chunk], w[chunk]
        invalid = 2.0 * (wc <= 0)
        sample = np.argpartition(rng.random((len(chunk), hypotheses, M)) + invalid[:, None], MIN_MATCHES, -1)
        sample = sample[..., :MIN_MATCHES, None]
        score = np.argsort(rng.random((len(chunk), M)) + invalid, -1)[:, :S, None]
        xn = (np.take_along_axis(uvc[:, None], sample, 2)[None] - c) / foc[:, None, None, None, None]
        Xs = np.broadcast_to(np.take_along_axis(Xc[:, None], sample, 2), xn.shape[:-1] + (3,))
        ones = np.ones(xn.shape[:-1])
        (R1, t1), (R2, t2) = _dlt_pose(xn, Xs, ones), _affine_pose(xn, Xs, ones)
        Rh, th = np.concatenate([R1, R2], 2), np.concatenate([t1, t2], 2)
        Xsub, uvsub = np.take_along_axis(Xc, score, 1), np.take_along_axis(uvc, score, 1)
        err = _errors(foc[:, None, None], c, Rh, th, Xsub[None, :, None], uvsub[None, :, None])
        best = np.argmin(_msac(err, np.take_along_axis(wc, score[..., 0], 1)[None, :, None], threshold), -1)
        R = np.take_along_axis(Rh, best[..., None, None, None], 2)[:, :, 0]
        t = np.take_along_axis(th, best[..., None, None], 2)[:, :, 0]
        err = _errors(foc[:, None], c, R, t, Xc[None], uvc[None])
        xn = (uvc[None] - c) / foc[:, None, None, None]
        Xb = np.broadcast_to(Xc, xn.shape[:-1] + (3,))
        for fit in (_dlt_pose, _affine_pose, _dlt_pose):
            R2, t2 = fit(xn, Xb, wc[None] * (err < threshold))
            err2 = _errors(foc[:, None], c, R2, t2, Xc[None], uvc[None])
            better = _msac(err2, wc[None], threshold) < _msac(err, wc[None], threshold)
            R = np.where(better[..., None, None], R2, R)
            t = np.where(better[..., None], t2, t)
            err = np.where(better[..., None], err2, err)
        Rs[:, chunk], ts[:, chunk], costs[:, chunk] = R, t, _msac(err, wc[None], threshold)
    return Rs, ts, costs


# ----------------------------------------------------------------------------- degenerate frames


def _classify(X, w, coplanar_ratio):
    """Per frame: 'ok', 'few' (< 6 valid matches) or 'coplanar'."""
    kinds = []
    for Xt, wt in zip(X, w):
        valid = wt > 0
        if valid.sum() < MIN_MATCHES:
            kinds.append("few")
            continue
        P = Xt[valid] - np.average(Xt[valid], axis=0, weights=wt[valid])
        s = np.linalg.svd(P * np.sqrt(wt[valid])[:, None], compute_uv=False)
        kinds.append("coplanar" if s[2] <= coplanar_ratio * s[0] else "ok")
    return kinds


def _propagate(X, uv, w, good, focal, c, threshold, R, t, cost):
    """Sweep forward then back: a frame takes its neighbour's pose when that explains its matches
    better (MSAC). Fixes isolated frames whose minimal samples all fell into a wrong solution."""
    R, t, cost = R.copy(), t.copy(), cost.copy()
    frames = np.flatnonzero(good)
    for order in (frames, frames[::-1]):
        for prev, f in zip(order[:-1], order[1:]):
            c_prev = _msac(_errors(focal, c, R[prev], t[prev], X[f], uv[f]), w[f], threshold)
            if c_prev < cost[f]:
                R[f], t[f], cost[f] = R[prev], t[prev], c_prev
    return R, t


def _fill_from_neighbours(R, t, known):
    """Poses of unknown frames: slerp / lerp of the camera between the nearest known frames."""
    idx = np.flatnonzero(known)
    R, t = R.copy(), t.copy()
    centres = -np.einsum("tji,tj->ti", R, t)
    for f in np.flatnonzero(~known):
        before, after = idx[idx < f], idx[idx > f]
        if len(before) and len(after):
            a, b = before[-1], after[0]
            s = (f - a) / (b - a)
            R[f] = slerp(R[a], R[b], s)
            C = (1 - s) * centres[a] + s * centres[b]
        else:
            a = before[-1] if len(before) else after[0]
            R[f], C = R[a], centres[a]
        t[f] = -R[f] @ C
    return R, t


def _default_pose(X, w, focal, image_size):
    """Camera on -z of the points, far enough that they span half the shorter image side."""
    valid = w > 0
    pts = X[valid] if valid.any() else X.reshape(-1, 3)
    centre = pts.mean(0)
    extent = np.max(np.linalg.norm(pts - centre, axis=1)) + 1e-6
    depth = focal * extent / (0.25 * min(image_size))
    return np.eye(3), np.array([0.0, 0.0, depth]) - centre


# ----------------------------------------------------------------------------- refinement


@dataclass
class Silhouette:
    """Boundary points that must project onto the mask outline: ``points`` (T, B, 3) in object
    space, ``distance`` (T, H, W) pixel distance to the outline (``mask_distance_field``), and the
    weight of the term against the reprojection term (per point)."""

    points: np.ndarray
    distance: np.ndarray
    weight: float = 0.1


@dataclass
class _Problem:
    X: np.ndarray  # (T, M, 3)
    uv: np.ndarray  # (T, M, 2)
    w: np.ndarray  # (T, M) user weights, 0 = no match
    active: np.ndarray  # (T,) bool, frames whose pose is optimised
    free_focal: bool
    free_centre: bool
    smoothness: float
    silhouette: Silhouette | None = None


def _projection(X, focal, c, R, t):
    """Pixels (T, N, 2) of X (T, N, 3) and their Jacobians wrt the pose (T, N, 2, 6) and the
    intrinsics (T, N, 2, 3) = (log focal, cx, cy); the pose update is R <- exp(d) R, t <- t + dt."""
    RX = X @ np.swapaxes(R, -1, -2)
    cam = RX + t[:, None]
    z = np.maximum(cam[..., 2], 1e-9)
    xy = cam[..., :2] / z[..., None]
    pix = focal * xy + c
    dcam = np.zeros(cam.shape[:-1] + (2, 3))  # d(pixel) / d(camera point)
    dcam[..., 0, 0] = dcam[..., 1, 1] = focal / z
    dcam[..., :, 2] = -focal * xy / z[..., None]
    J_pose = np.concatenate([-dcam @ skew(RX), dcam], -1)
    J_int = np.zeros(pix.shape + (3,))
    J_int[..., 0] = focal * xy
    J_int[..., 0, 1] = J_int[..., 1, 2] = 1.0
    return pix, J_pose, J_int, cam[..., 2] <= 1e-9


def _cauchy(sq, scale):
    return scale**2 * np.log1p(sq / scale**2), 1.0 / (1.0 + sq / scale**2)


def _sample(field, pix):
    """Bilinear samples and gradients (d/du, d/dv) of fields (T, H, W) at pixels (T, N, 2).

    Pixel centres sit at half-integers, so sample (u, v) reads between cells u - 0.5 and v - 0.5.
    """
    T, Hh, Ww = field.shape
    x = np.clip(pix[..., 0] - 0.5, 0, Ww - 1.000001)
    y = np.clip(pix[..., 1] - 0.5, 0, Hh - 1.000001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    ti = np.arange(T)[:, None]
    f00, f01 = field[ti, y0, x0], field[ti, y0, x0 + 1]
    f10, f11 = field[ti, y0 + 1, x0], field[ti, y0 + 1, x0 + 1]
    value = (f00 * (1 - fx) + f01 * fx) * (1 - fy) + (f10 * (1 - fx) + f11 * fx) * fy
    du = (f01 - f00) * (1 - fy) + (f11 - f10) * fy
    dv = (f10 - f00) * (1 - fx) + (f11 - f01) * fx
    return value, np.stack([du, dv], -1)


def _terms(prob, focal, c, R, t, scale):
    """Robust cost and the weighted least-squares blocks (r, J_pose, J_int, W), rows per frame."""
    pix, Jp, Ji, behind = _projection(prob.X, focal, c, R, t)
    r = pix - prob.uv
    rho, wr = _cauchy((r**2).sum(-1), scale)
    rho = np.where(behind, BEHIND_COST, rho)  # never a cheap outlier: a step that flips points is refused
    act = prob.active[:, None]
    cost = float((rho * prob.w * act).sum())
    T = len(R)
    W = np.repeat(wr * prob.w * ~behind, 2, axis=1)
    blocks = [(r.reshape(T, -1), Jp.reshape(T, -1, 6), Ji.reshape(T, -1, 3), W)]
    sil = prob.silhouette
    if sil is not None:
        spix, sJp, sJi, sbehind = _projection(sil.points, focal, c, R, t)
        d, grad = _sample(sil.distance, spix)
        Hh, Ww = sil.distance.shape[1:]
        valid = ~sbehind & (spix[..., 0] >= 0) & (spix[..., 0] <= Ww) & (spix[..., 1] >= 0) & (spix[..., 1] <= Hh)
        d = np.where(valid, d, 0.0)
        cost += float((sil.weight * d**2 * act).sum())
        Js = np.einsum("tna,tnak->tnk", grad, sJp), np.einsum("tna,tnak->tnk", grad, sJi)
        blocks.append((d, Js[0], Js[1], sil.weight * valid))
    return cost, blocks


def _smooth_terms(prob, R, t, unit):
    """Second differences of relative rotations and of translations, in pixels.

    ``unit`` (6,) converts radians and object units to pixels (focal, focal / depth), so the
    ``smoothness`` weight is dimensionless against the reprojection term.
    """
    T = len(R)
    trip = [f for f in range(1, T - 1) if prob.active[f - 1 : f + 2].all()]
    if prob.smoothness <= 0 or not trip:
        return [], np.zeros((0, 6))
    f = np.array(trip)
    omega = rotation_log(R[1:] @ np.swapaxes(R[:-1], -1, -2))  # omega[i]: frame i -> i + 1
    second = np.concatenate([omega[f] - omega[f - 1], t[f + 1] - 2 * t[f] + t[f - 1]], -1)
    return trip, np.sqrt(prob.smoothness) * unit * second


def _add_smoothness(prob, H, g, frames, R, t, unit):
    """Gauss-Newton blocks of the smoothness prior (rotation Jacobian to first order)."""
    trip, res = _smooth_terms(prob, R, t, unit)
    pos = {f: i for i, f in enumerate(frames)}
    s = np.sqrt(prob.smoothness)
    for f, r in zip(trip, res):
        for da, ca in ((-1, 1.0), (0, -2.0), (1, 1.0)):
            a = 6 * pos[f + da]
            g[a : a + 6] += s * ca * unit * r
            for db, cb in ((-1, 1.0), (0, -2.0), (1, 1.0)):
                b = 6 * pos[f + db]
                H[a : a + 6, b : b + 6] += np.diag(s * s * ca * cb * unit**2)


def _normal_equations(prob, blocks, frames, shared):
    """Dense H, g over (6 pose parameters per active frame) + the free intrinsics."""
    n, ns = len(frames), len(shared)
    H = np.zeros((6 * n + ns, 6 * n + ns))
    g = np.zeros(6 * n + ns)
    for r, Jp, Ji, W in blocks:
        r, Jp, Ji, W = r[frames], Jp[frames], Ji[frames][..., shared], W[frames][..., None]
        Hpp = np.einsum("tri,trj->tij", Jp * W, Jp)
        for i in range(n):
            H[6 * i : 6 * i + 6, 6 * i : 6 * i + 6] += Hpp[i]
        g[: 6 * n] += np.einsum("tri,tr->ti", Jp * W, r).ravel()
        if ns:
            Hps = np.einsum("tri,trj->tij", Jp * W, Ji).reshape(6 * n, ns)
            H[: 6 * n, 6 * n :] += Hps
            H[6 * n :, : 6 * n] += Hps.T
            H[6 * n :, 6 * n :] += np.einsum("tri,trj->ij", Ji * W, Ji)
            g[6 * n :] += np.einsum("tri,tr->i", Ji * W, r)
    return H, g


def _lm(prob, focal, c, R, t, scale, iterations):
    """Levenberg-Marquardt on the robust cost (IRLS weights), dense normal equations."""
    frames = np.flatnonzero(prob.active)
    n = len(frames)
    shared = ([0] if prob.free_focal else []) + ([1, 2] if prob.free_centre else [])
    valid = prob.w > 0
    depth = np.median(to_camera(rigid(R, t), prob.X)[..., 2][valid]) if valid.any() else 1.0
    unit = np.repeat([focal, focal / max(depth, 1e-9)], 3)  # px per radian, px per object unit

    def total(focal, c, R, t):
        cost, blocks = _terms(prob, focal, c, R, t, scale)
        return cost + float((_smooth_terms(prob, R, t, unit)[1] ** 2).sum()), blocks

    lam = 1e-3
    cost, blocks = total(focal, c, R, t)
    for _ in range(iterations):
        H, g = _normal_equations(prob, blocks, frames, shared)
        _add_smoothness(prob, H, g, frames, R, t, unit)
        while True:
            step = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-9), g)
            ds = dict(zip(shared, step[6 * n :]))
            if np.isfinite(step).all() and abs(ds.get(0, 0.0)) < 1.0:  # focal: at most a factor e per step
                d = step[: 6 * n].reshape(n, 6)
                R2, t2 = R.copy(), t.copy()
                R2[frames] = rodrigues(d[:, :3]) @ R[frames]
                t2[frames] = t[frames] + d[:, 3:]
                focal2 = focal * np.exp(ds.get(0, 0.0))
                c2 = c + np.array([ds.get(1, 0.0), ds.get(2, 0.0)])
                cost2, blocks2 = total(focal2, c2, R2, t2)
                if cost2 < cost:
                    break
            lam *= 4
            if lam > 1e8:
                return focal, c, R, t
        converged = cost - cost2 < 1e-9 * cost
        focal, c, R, t, cost, blocks = focal2, c2, R2, t2, cost2, blocks2
        lam = max(lam / 3, 1e-9)
        if converged:
            break
    return focal, c, R, t


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


# ----------------------------------------------------------------------------- public API


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
        R, t = zip(*(_default_pose(X[f], w[f], focal, image_size) for f in range(len(X))))
        return focal, np.stack(R), np.stack(t)
    rng = np.random.default_rng(cfg.seed)
    Rs, ts, costs = _ransac(X, uv, w, good, candidates, c, threshold, cfg.ransac_hypotheses, rng)
    best = int(np.argmin(costs[:, good].sum(1)))
    focal = candidates[best]
    R, t = _propagate(X, uv, w, good, focal, c, threshold, Rs[best], ts[best], costs[best])
    return focal, *_fill_from_neighbours(R, t, good)


def _refine(prob, focal, c, R, t, threshold, cfg, silhouette):
    """Cauchy LM with the scale annealed from the RANSAC threshold (a rough start cannot lock onto
    outliers), then least squares on the inliers, then the silhouette term if given."""
    scale = max(threshold, cfg.robust_scale_px)
    while True:
        focal, c, R, t = _lm(prob, focal, c, R, t, scale, cfg.iterations)
        if scale <= cfg.robust_scale_px:
            break
        scale = max(cfg.robust_scale_px, scale / 2)
    w = prob.w
    if cfg.polish:  # efficient for Gaussian noise; 3.5 px holds 99.8% of unit 2D Gaussian noise at the default scale
        prob.w = w * (_errors(focal, c, R, t, prob.X, prob.uv) < 1.75 * cfg.robust_scale_px)
        focal, c, R, t = _lm(prob, focal, c, R, t, 1e6, cfg.iterations)
        prob.w = w
    if silhouette is not None:
        prob.silhouette = silhouette
        focal, c, R, t = _lm(prob, focal, c, R, t, scale, cfg.iterations)
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
    kinds = _classify(X, w, cfg.coplanar_ratio)
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
        prob = _Problem(X, uv, w, active, focal_px is None, cfg.solve_principal_point, cfg.smoothness)
        focal, c, R, t = _refine(prob, focal, c, R, t, threshold, cfg, silhouette)
        R, t = _fill_from_neighbours(R, t, active)
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


# ----------------------------------------------------------------------------- presentations


def _procrustes(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rigid fit (Kabsch) per frame: B[t] ~= R[t] @ A + t[t]; A (N,3), B (T,N,3), w (T,N)."""
    wn = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
    ma = wn @ A
    mb = np.einsum("tn,tnk->tk", wn, B)
    Hm = np.einsum("tn,tni,tnj->tij", wn, A[None] - ma[:, None], B - mb[:, None])
    U, _, Vt = np.linalg.svd(Hm)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(Hm)
    D[:, 0, 0] = D[:, 1, 1] = 1.0
    D[:, 2, 2] = d
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    return R, mb - np.einsum("tij,tj->ti", R, ma)


def object_motion(anchor_vertices, vertices, weights=None) -> ObjectMotion:
    """The object's per-frame rigid motion relative to the anchor (weighted Procrustes)."""
    A = np.asarray(anchor_vertices, np.float64)
    B = np.asarray(vertices, np.float64)
    w = np.ones(B.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    R, t = _procrustes(A, B, w)
    moved = A[None] @ np.swapaxes(R, -1, -2) + t[:, None]
    wn = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
    rms = np.sqrt((wn * ((moved - B) ** 2).sum(-1)).sum(-1))
    return ObjectMotion(matrices=rigid(R, t), rms=rms)


PRESENTATIONS = ("object_moves", "camera_moves")


def present(solution: CameraSolution, mode: str, motion: ObjectMotion, vertices) -> tuple[CameraSolution, np.ndarray]:
    """Camera and vertices for a presentation; every frame's image stays exactly the same.

    "object_moves": as solved. "camera_moves": the object's rigid motion M_t goes into the camera
    (world_to_camera @ M_t) and the vertices lose it (M_t^-1 applied), so the mesh only deforms.
    """
    if mode not in PRESENTATIONS:
        raise ValueError(f"camera mode must be one of {PRESENTATIONS}, got {mode!r}")
    V = np.asarray(vertices)
    if mode == "object_moves":
        return solution, V
    M = motion.matrices
    return replace(solution, world_to_camera=solution.world_to_camera @ M), remove_motion(M, V)


def remove_motion(matrices: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Apply M_t^-1 to each frame's vertices (T, N, 3): R^T (v - t). Works on frame chunks too."""
    V = np.asarray(vertices)
    R, t = matrices[:, :3, :3], matrices[:, :3, 3]
    return np.einsum("tji,tnj->tni", R, V - t[:, None]).astype(V.dtype)


# ----------------------------------------------------------------------------- 2D tracks


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
