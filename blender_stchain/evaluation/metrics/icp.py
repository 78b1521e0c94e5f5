"""ActionBench's alignment: gradient ICP with scale (facebookresearch/actionmesh@66db12e, ``actionbench/icp.py``).

What it does, reproduced here without pytorch3d:
- 24 starts, the axis-aligned orientations: XYZ Euler angles (radians of) azimuth
  0,0,0,0, 90 x4, 180 x4, 270 x4, 0 x4, 90 x4 about X; elevation 0 (16 times), then 90,90,-90,-90,90,90,-90,-90
  about Y; roll 0,90,180,270 (four times) then 0,90 (four times) about Z; matrix ``Rx @ Ry @ Rz``
  (gimbal lock at +-90 degrees elevation makes two pairs coincide: 22 distinct orientations, as in the reference);
- per start: a 6D rotation (identity start, Gram-Schmidt rows as pytorch3d's ``rotation_6d_to_matrix``),
  a translation (0) and an anisotropic scale (1, 1, 1); the transform is ``x -> (s * x) @ (R0 @ R6) + T``
  on row vectors;
- loss: pytorch3d's ``chamfer_distance`` (squared distances, mean per direction, the two summed) per start,
  Adam (lr 0.01, default betas) on the mean over the 24 starts, 200 iterations;
- kept: the lowest loss seen over all iterations and starts. As in the reference, the rotation kept is
  the one the loss was computed with while translation and scale are read after that iteration's step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_AZIM = [0] * 4 + [90] * 4 + [180] * 4 + [270] * 4 + [0] * 4 + [90] * 4
_ELEV = [0] * 16 + [90] * 2 + [-90] * 2 + [90] * 2 + [-90] * 2
_ROLL = [0, 90, 180, 270] * 4 + [0, 90] * 4


@dataclass(frozen=True)
class Alignment:
    """``x -> (scale * x) @ rotation + translation`` on row vectors (the prediction into GT space)."""

    scale: np.ndarray  # (3,) anisotropic
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    loss: float

    def apply(self, points) -> np.ndarray:
        p = np.asarray(points, np.float64)
        return (p * self.scale) @ self.rotation + self.translation

    @classmethod
    def identity(cls) -> "Alignment":
        return cls(np.ones(3), np.eye(3), np.zeros(3), 0.0)


def _axis(angle: np.ndarray, axis: int) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    rows = {
        0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        2: [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def canonical_rotations() -> np.ndarray:
    """The 24 starting rotations (24, 3, 3), float32 like the reference."""
    a, e, r = (np.radians(np.asarray(x, np.float32)) for x in (_AZIM, _ELEV, _ROLL))
    return (_axis(a, 0) @ _axis(e, 1) @ _axis(r, 2)).astype(np.float32)


def rotation_6d(d6):
    """pytorch3d's 6D -> matrix: normalise the first 3, orthogonalise the second, rows b1, b2, b1 x b2."""
    import torch

    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-2)


def _nearest(a, b):
    """Index of each row of ``a`` (B, P, 3)'s nearest point in ``b`` ((Q, 3) shared, or (B, Q, 3)).

    Exact in both paths: k-d trees on CPU (scipy; one tree when ``b`` is shared), chunked ``cdist`` on
    a GPU. No autograd: the caller gathers the pairs it differentiates.
    """
    import torch

    with torch.no_grad():
        if a.device.type == "cpu":
            from .chamfer import kdtree

            A = a.numpy()
            if b.ndim == 2:
                idx = kdtree(b.numpy()).query(A.reshape(-1, 3))[1].reshape(A.shape[:2])
            else:
                idx = np.stack([kdtree(bb).query(aa)[1] for aa, bb in zip(A, b.numpy())])
            return torch.as_tensor(idx, dtype=torch.int64)
        bb = b.expand(a.shape[0], -1, -1) if b.ndim == 2 else b
        return torch.cat([torch.cdist(part, bb).argmin(dim=2) for part in a.split(2048, dim=1)], dim=1)


def _chamfer_sq(x, y):
    """Per start: mean over x (B, P, 3) of the squared distance to its nearest point of y (Q, 3), plus
    the same from y (pytorch3d's default ``chamfer_distance``). The gradient flows through the chosen
    pairs only, which is the gradient of the minimum."""
    import torch

    to_y = y[_nearest(x, y)]  # (B, P, 3)
    from_y = x.gather(1, _nearest(y.expand(x.shape[0], -1, -1), x.detach())[..., None].expand(-1, -1, 3))
    return (x - to_y).square().sum(-1).mean(1) + (y[None] - from_y).square().sum(-1).mean(1)


def gradient_icp(pred, gt, lr: float = 0.01, iterations: int = 200, device: str = "cpu") -> Alignment:
    """Rigid + anisotropic-scale transform taking the cloud ``pred`` (P, 3) onto ``gt`` (Q, 3)."""
    import torch

    with torch.enable_grad():
        R0 = torch.as_tensor(canonical_rotations(), device=device)
        n = len(R0)
        src = torch.as_tensor(np.asarray(pred), dtype=torch.float32, device=device)[None].expand(n, -1, -1)
        dst = torch.as_tensor(np.asarray(gt), dtype=torch.float32, device=device)
        T = torch.nn.Parameter(torch.zeros(n, 3, device=device))
        r6 = torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0, 1.0, 0]], device=device).repeat(n, 1))
        s = torch.nn.Parameter(torch.ones(n, 3, device=device))
        opt = torch.optim.Adam([T, r6, s], lr=lr)
        best, kept = float("inf"), None
        for _ in range(iterations):
            opt.zero_grad()
            R = R0 @ rotation_6d(r6)
            loss = _chamfer_sq(s[:, None] * src @ R + T[:, None], dst)
            loss.mean().backward()
            opt.step()
            low, i = loss.detach().min(0)
            if low.item() < best:
                best = low.item()
                kept = (R[i].detach().cpu().numpy(), T[i].detach().cpu().numpy(), s[i].detach().cpu().numpy())
    R, t, sc = (np.asarray(k, np.float64) for k in kept)
    return Alignment(scale=sc, rotation=R, translation=t, loss=best)
