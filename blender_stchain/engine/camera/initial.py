"""Robust linear start: calibrated DLT / scaled-orthographic poses inside RANSAC per focal
candidate, and poses for frames that cannot be solved alone (borrowed from their neighbours)."""

from __future__ import annotations

import numpy as np

from .geometry import nearest_rotation, slerp
from .solution import MIN_MATCHES, RANSAC_ELEMENTS, SCORE_MATCHES


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


def pose_errors(model, R, t, X, uv, sigma=None):
    """Reprojection error for any batch shape, in px or, with ``sigma``, in match uncertainties;
    points behind the camera count as infinite."""
    cam = X @ np.swapaxes(R, -1, -2) + t[..., None, :]
    front = cam[..., 2] > 1e-9
    err = np.sqrt(((model.project(cam) - uv) ** 2).sum(-1))
    if sigma is not None:
        err = err / sigma
    return np.where(front, err, np.inf)


def _msac(err, w, threshold):
    return (np.minimum(err, threshold) ** 2 * w).sum(-1)


def ransac(model, X, uv, w, sigma, good, threshold, hypotheses, rng):
    """Best (R, t, MSAC cost) per frame under one camera model, for frames in ``good``.

    All hypotheses of a chunk of frames are made and scored at once: calibrated DLTs and
    scaled-orthographic fits of 6 distinct valid matches, scored on ``SCORE_MATCHES`` random matches;
    the best one per frame is refitted on its inliers among all matches (kept only where it helps).
    ``sigma`` (T, M) whitens the errors, so ``threshold`` is in match uncertainties.
    """
    T, M = w.shape
    S = min(M, SCORE_MATCHES)
    Rs, ts, costs = np.tile(np.eye(3), (T, 1, 1)), np.zeros((T, 3)), np.full(T, np.inf)
    frames = np.flatnonzero(good)
    xn_all = model.normalise(uv)
    per_chunk = max(1, RANSAC_ELEMENTS // (hypotheses * S))  # bounds the (frames, H, S) arrays
    for chunk in (frames[a:a + per_chunk] for a in range(0, len(frames), per_chunk)):
        Xc, uvc, wc, sc, xc = X[chunk], uv[chunk], w[chunk], sigma[chunk], xn_all[chunk]
        invalid = 2.0 * (wc <= 0)
        sample = np.argpartition(rng.random((len(chunk), hypotheses, M)) + invalid[:, None], MIN_MATCHES, -1)
        sample = sample[..., :MIN_MATCHES, None]
        score = np.argsort(rng.random((len(chunk), M)) + invalid, -1)[:, :S, None]
        xn = np.take_along_axis(xc[:, None], sample, 2)
        Xs = np.take_along_axis(Xc[:, None], sample, 2)
        ones = np.ones(xn.shape[:-1])
        (R1, t1), (R2, t2) = _dlt_pose(xn, Xs, ones), _affine_pose(xn, Xs, ones)
        Rh, th = np.concatenate([R1, R2], 1), np.concatenate([t1, t2], 1)
        sub = [np.take_along_axis(a, score if a.ndim == 3 else score[..., 0], 1) for a in (Xc, uvc, wc, sc)]
        err = pose_errors(model, Rh, th, sub[0][:, None], sub[1][:, None], sub[3][:, None])
        best = np.argmin(_msac(err, sub[2][:, None], threshold), -1)
        R = np.take_along_axis(Rh, best[:, None, None, None], 1)[:, 0]
        t = np.take_along_axis(th, best[:, None, None], 1)[:, 0]
        err = pose_errors(model, R, t, Xc, uvc, sc)
        for fit in (_dlt_pose, _affine_pose, _dlt_pose):
            R2, t2 = fit(xc, Xc, wc * (err < threshold))
            err2 = pose_errors(model, R2, t2, Xc, uvc, sc)
            better = _msac(err2, wc, threshold) < _msac(err, wc, threshold)
            R = np.where(better[..., None, None], R2, R)
            t = np.where(better[..., None], t2, t)
            err = np.where(better[..., None], err2, err)
        Rs[chunk], ts[chunk], costs[chunk] = R, t, _msac(err, wc, threshold)
    return Rs, ts, costs


def focal_frames(good, count: int) -> np.ndarray:
    """Up to ``count`` solvable frames spread evenly over the clip: the focal candidates are tried on
    these only, so the search costs the same for every clip length."""
    frames = np.flatnonzero(good)
    if len(frames) <= count:
        return good
    pick = np.zeros_like(good)
    pick[frames[np.round(np.linspace(0, len(frames) - 1, count)).astype(int)]] = True
    return pick


def classify_frames(X, w, coplanar_ratio):
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


def propagate_pose(model, X, uv, w, sigma, good, threshold, R, t, cost):
    """Sweep forward then back: a frame takes its neighbour's pose when that explains its matches
    better (MSAC). Fixes isolated frames whose minimal samples all fell into a wrong solution."""
    R, t, cost = R.copy(), t.copy(), cost.copy()
    frames = np.flatnonzero(good)
    for order in (frames, frames[::-1]):
        for prev, f in zip(order[:-1], order[1:]):
            c_prev = _msac(pose_errors(model, R[prev], t[prev], X[f], uv[f], sigma[f]), w[f], threshold)
            if c_prev < cost[f]:
                R[f], t[f], cost[f] = R[prev], t[prev], c_prev
    return R, t


def fill_from_neighbours(R, t, known):
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


def default_pose(X, w, focal, image_size):
    """Camera on -z of the points, far enough that they span half the shorter image side."""
    valid = w > 0
    pts = X[valid] if valid.any() else X.reshape(-1, 3)
    centre = pts.mean(0)
    extent = np.max(np.linalg.norm(pts - centre, axis=1)) + 1e-6
    depth = focal * extent / (0.25 * min(image_size))
    return np.eye(3), np.array([0.0, 0.0, depth]) - centre
