"""Block-structured normal equations: per-frame 6x6 pose blocks, a band of couplings between
neighbouring frames (the smoothness prior reaches two frames away) and a few shared intrinsics.

The shared parameters are eliminated with the Schur complement and the pose band is factored by a
block-banded Cholesky, so a solve costs O(frames) instead of the O(frames^3) of a dense system.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Normal:
    """H = [[A, B], [B^T, C]], g = [gp, gs]; A is block-banded: ``diag`` (n, 6, 6), ``off[d]``
    (n - d, 6, 6) the block between frame i + d and frame i (d = 1, 2), ``B`` (n, 6, k), ``C`` (k, k)."""

    diag: np.ndarray
    off: dict
    B: np.ndarray
    C: np.ndarray
    gp: np.ndarray  # (n, 6)
    gs: np.ndarray  # (k,)

    @classmethod
    def zeros(cls, n: int, k: int) -> Normal:
        return cls(np.zeros((n, 6, 6)), {1: np.zeros((max(n - 1, 0), 6, 6)), 2: np.zeros((max(n - 2, 0), 6, 6))},
                   np.zeros((n, 6, k)), np.zeros((k, k)), np.zeros((n, 6)), np.zeros(k))


def _banded_cholesky(diag, off):
    """Lower block factor of a symmetric positive definite block-banded matrix (bandwidth 2)."""
    n = len(diag)
    L0, L1, L2 = np.zeros_like(diag), np.zeros_like(off[1]), np.zeros_like(off[2])
    inv = np.zeros_like(diag)
    for i in range(n):
        S = diag[i].copy()
        if i >= 1:
            S -= L1[i - 1] @ L1[i - 1].T
        if i >= 2:
            S -= L2[i - 2] @ L2[i - 2].T
        L0[i] = np.linalg.cholesky(S)
        inv[i] = np.linalg.inv(L0[i])
        if i + 1 < n:
            A1 = off[1][i] - (L2[i - 1] @ L1[i - 1].T if i >= 1 else 0.0)
            L1[i] = A1 @ inv[i].T
        if i + 2 < n:
            L2[i] = off[2][i] @ inv[i].T
    return inv, L1, L2


def _banded_solve(factor, b):
    """Solve with the factor of ``_banded_cholesky``; b (n, 6, r)."""
    inv, L1, L2 = factor
    n = len(inv)
    y = np.zeros_like(b)
    for i in range(n):
        r = b[i].copy()
        if i >= 1:
            r -= L1[i - 1] @ y[i - 1]
        if i >= 2:
            r -= L2[i - 2] @ y[i - 2]
        y[i] = inv[i] @ r
    x = np.zeros_like(b)
    for i in reversed(range(n)):
        r = y[i].copy()
        if i + 1 < n:
            r -= L1[i].T @ x[i + 1]
        if i + 2 < n:
            r -= L2[i].T @ x[i + 2]
        x[i] = inv[i].T @ r
    return x


def solve_damped(N: Normal, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Step (pose (n, 6), shared (k,)) solving (H + lam diag(H)) step = -g (Levenberg-Marquardt)."""
    k = N.B.shape[2]
    eye = np.eye(6)
    diag = N.diag + lam * (np.diagonal(N.diag, axis1=-2, axis2=-1)[..., None] * eye + 1e-9 * eye)
    C = N.C + lam * np.diag(np.diag(N.C) + 1e-9)
    rhs = np.concatenate([-N.gp[..., None], N.B], -1)  # (n, 6, 1 + k)
    banded = any(np.any(o) for o in N.off.values())
    if banded:
        Y = _banded_solve(_banded_cholesky(diag, N.off), rhs)
    else:
        Y = np.linalg.solve(diag, rhs)
    if k == 0:
        return Y[..., 0], np.zeros(0)
    Yg, Yb = Y[..., 0], Y[..., 1:]
    S = C - np.einsum("nik,nil->kl", N.B, Yb)
    ds = np.linalg.solve(S, -N.gs - np.einsum("nik,ni->k", N.B, Yg))
    return Yg - np.einsum("nik,k->ni", Yb, ds), ds
