"""Joint refinement: Levenberg-Marquardt with a Cauchy loss over every pose and the shared
intrinsics of the camera model, a second-difference smoothness prior and the optional silhouette
term. Residuals are whitened by each match's uncertainty, so every scale is in units of the
matches; the normal equations keep their block structure (``blocks``), so a step is linear in
clip length."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import Normal, solve_damped
from .geometry import rigid, rodrigues, rotation_log, to_camera
from .models import Pinhole
from .silhouette import Silhouette
from .solution import BEHIND_COST


@dataclass
class Problem:
    X: np.ndarray  # (T, M, 3)
    uv: np.ndarray  # (T, M, 2)
    w: np.ndarray  # (T, M) user weights, 0 = no match
    active: np.ndarray  # (T,) bool, frames whose pose is optimised
    smoothness: float
    sigma: np.ndarray | None = None  # (T, M) match uncertainty (px); None = 1 px
    silhouette: Silhouette | None = None


def _projection(model: Pinhole, X, R, t):
    """Pixels (T, N, 2) of X (T, N, 3), Jacobians wrt the pose (T, N, 2, 6) and the model's free
    parameters (T, N, 2, k); the pose update is R <- exp(d) R, t <- t + dt."""
    RX = X @ np.swapaxes(R, -1, -2)
    cam = RX + t[:, None]
    pix, dcam, J_int = model.jacobians(cam)
    J_pose = np.concatenate([np.cross(RX[..., None, :], dcam), dcam], -1)  # -dcam [RX]x, row by row
    return pix, J_pose, J_int, cam[..., 2] <= 1e-9


def _cauchy(sq, scale):
    return scale**2 * np.log1p(sq / scale**2), 1.0 / (1.0 + sq / scale**2)


def _sample(field, pix, scale=1.0):
    """Bilinear samples (footage px) and gradients (d/du, d/dv) of fields (T, h, w) at pixels (T, N, 2).

    Field cells cover ``scale`` footage pixels; cell centres sit at half-integers of the field grid.
    """
    T, Hh, Ww = field.shape
    x = np.clip(pix[..., 0] / scale - 0.5, 0, Ww - 1.000001)
    y = np.clip(pix[..., 1] / scale - 0.5, 0, Hh - 1.000001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    ti = np.arange(T)[:, None]
    f00, f01 = field[ti, y0, x0], field[ti, y0, x0 + 1]
    f10, f11 = field[ti, y0 + 1, x0], field[ti, y0 + 1, x0 + 1]
    value = (f00 * (1 - fx) + f01 * fx) * (1 - fy) + (f10 * (1 - fx) + f11 * fx) * fy
    du = (f01 - f00) * (1 - fy) + (f11 - f10) * fy
    dv = (f10 - f00) * (1 - fx) + (f11 - f01) * fx
    return value * scale, np.stack([du, dv], -1)


def _terms(prob, model, R, t, scale):
    """Robust cost and the weighted least-squares blocks (r, J_pose, J_int, W), rows per frame."""
    pix, Jp, Ji, behind = _projection(model, prob.X, R, t)
    inv = 1.0 if prob.sigma is None else 1.0 / prob.sigma[..., None]
    r = (pix - prob.uv) * inv
    rho, wr = _cauchy((r**2).sum(-1), scale)
    rho = np.where(behind, BEHIND_COST, rho)  # never a cheap outlier: a step that flips points is refused
    act = prob.active[:, None]
    cost = float((rho * prob.w * act).sum())
    T = len(R)
    W = np.repeat(wr * prob.w * ~behind, 2, axis=1)
    inv = inv if np.isscalar(inv) else inv[..., None]
    blocks = [(r.reshape(T, -1), (Jp * inv).reshape(T, -1, 6), (Ji * inv).reshape(T, 2 * Ji.shape[1], Ji.shape[-1]), W)]
    sil = prob.silhouette
    if sil is not None:
        spix, sJp, sJi, sbehind = _projection(model, sil.points, R, t)
        d, grad = _sample(sil.distance, spix, sil.scale)
        Hh, Ww = (n * sil.scale for n in sil.distance.shape[1:])
        valid = ~sbehind & (spix[..., 0] >= 0) & (spix[..., 0] <= Ww) & (spix[..., 1] >= 0) & (spix[..., 1] <= Hh)
        d = np.where(valid, d, 0.0)
        cost += float((sil.weight * d**2 * act).sum())
        Js = np.einsum("tna,tnak->tnk", grad, sJp), np.einsum("tna,tnak->tnk", grad, sJi)
        blocks.append((d, Js[0], Js[1], sil.weight * valid))
    return cost, blocks


def _smooth_terms(prob, R, t, unit):
    """Second differences of relative rotations and of translations, in match units.

    ``unit`` (6,) converts radians and object units to whitened pixels (focal, focal / depth, over
    the typical match uncertainty), so the ``smoothness`` weight is dimensionless.
    """
    T = len(R)
    act = prob.active
    trip = np.flatnonzero(act[:-2] & act[1:-1] & act[2:]) + 1 if T >= 3 else np.zeros(0, int)
    if prob.smoothness <= 0 or not len(trip):
        return trip, np.zeros((0, 6))
    f = trip
    omega = rotation_log(R[1:] @ np.swapaxes(R[:-1], -1, -2))  # omega[i]: frame i -> i + 1
    second = np.concatenate([omega[f] - omega[f - 1], t[f + 1] - 2 * t[f] + t[f - 1]], -1)
    return trip, np.sqrt(prob.smoothness) * unit * second


def _add_smoothness(prob, N: Normal, frames, R, t, unit):
    """Gauss-Newton blocks of the smoothness prior (rotation Jacobian to first order): each triple
    (f-1, f, f+1) couples frames up to two apart, which is the band ``Normal`` stores."""
    trip, res = _smooth_terms(prob, R, t, unit)
    if not len(res):
        return
    pos = np.full(len(prob.active), -1)
    pos[frames] = np.arange(len(frames))
    s = np.sqrt(prob.smoothness)
    centre = pos[trip]  # active neighbours are consecutive in the compact index
    coef = {-1: 1.0, 0: -2.0, 1: 1.0}
    for da, ca in coef.items():
        np.add.at(N.gp, centre + da, s * ca * unit * res)
        for db, cb in coef.items():
            block = s * s * ca * cb * unit**2  # diagonal 6x6
            lo, d = min(da, db), abs(da - db)
            if d == 0:
                np.add.at(N.diag, centre + da, np.diag(block))
            elif da > db:  # block (row a, column b) with a below b: the band's lower part
                np.add.at(N.off[d], centre + lo, np.diag(block))


def _normal_equations(blocks, frames, k) -> Normal:
    """Per-frame pose blocks, pose-intrinsics couplings and the shared block."""
    N = Normal.zeros(len(frames), k)
    for r, Jp, Ji, W in blocks:
        r, Jp, Ji, W = r[frames], Jp[frames], Ji[frames], W[frames][..., None]
        JpW = np.swapaxes(Jp * W, 1, 2)  # batched matmuls go through BLAS (einsum here was 8x slower)
        N.diag += JpW @ Jp
        N.gp += (JpW @ r[..., None])[..., 0]
        if k:
            N.B += JpW @ Ji
            JiW = (Ji * W).reshape(-1, k)
            N.C += JiW.T @ Ji.reshape(-1, k)
            N.gs += JiW.T @ r.reshape(-1)
    return N


def _unit(prob, model: Pinhole, R, t) -> np.ndarray:
    """Whitened pixels per radian and per object unit (6,): what makes the smoothness weight dimensionless."""
    valid = prob.w > 0
    depth = np.median(to_camera(rigid(R, t), prob.X)[..., 2][valid]) if valid.any() else 1.0
    typical = 1.0 if prob.sigma is None else float(np.median(prob.sigma[valid])) if valid.any() else 1.0
    return np.repeat([model.focal, model.focal / max(depth, 1e-9)], 3) / typical


def objective(prob, model: Pinhole, R, t, scale) -> float:
    """The cost ``levenberg_marquardt`` minimises from this start (robust reprojection, outline, smoothness)."""
    unit = _unit(prob, model, R, t)
    return _terms(prob, model, R, t, scale)[0] + float((_smooth_terms(prob, R, t, unit)[1] ** 2).sum())


def levenberg_marquardt(prob, model: Pinhole, R, t, scale, iterations):
    """Levenberg-Marquardt on the robust cost (IRLS weights), block normal equations."""
    frames = np.flatnonzero(prob.active)
    k = len(model.free)
    unit = _unit(prob, model, R, t)

    def total(model, R, t):
        cost, blocks = _terms(prob, model, R, t, scale)
        return cost + float((_smooth_terms(prob, R, t, unit)[1] ** 2).sum()), blocks

    lam = 1e-3
    cost, blocks = total(model, R, t)
    for _ in range(iterations):
        N = _normal_equations(blocks, frames, k)
        _add_smoothness(prob, N, frames, R, t, unit)
        while True:
            try:
                d, ds = solve_damped(N, lam)
            except np.linalg.LinAlgError:
                d, ds = np.full((len(frames), 6), np.nan), np.zeros(k)
            if np.isfinite(d).all() and np.isfinite(ds).all() and model.step_ok(ds):
                R2, t2 = R.copy(), t.copy()
                R2[frames] = rodrigues(d[:, :3]) @ R[frames]
                t2[frames] = t[frames] + d[:, 3:]
                model2 = model.updated(ds)
                cost2, blocks2 = total(model2, R2, t2)
                if cost2 < cost:
                    break
            lam *= 4
            if lam > 1e8:
                return model, R, t
        converged = cost - cost2 < 1e-9 * cost
        model, R, t, cost, blocks = model2, R2, t2, cost2, blocks2
        lam = max(lam / 3, 1e-9)
        if converged:
            break
    return model, R, t
