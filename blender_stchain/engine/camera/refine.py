"""Joint refinement: Levenberg-Marquardt with a Cauchy loss over every pose and the shared
intrinsics, a second-difference smoothness prior and the optional silhouette term."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import rigid, rodrigues, rotation_log, skew, to_camera
from .silhouette import Silhouette
from .solution import BEHIND_COST


@dataclass
class Problem:
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


def levenberg_marquardt(prob, focal, c, R, t, scale, iterations):
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
