"""CD-3D, CD-4D and CD-M exactly as ActionBench computes them.

Source: facebookresearch/actionmesh@66db12e (metric files unchanged since cbb4d00, "release ActionBench
+ evaluation script"), ``actionbench/benchmark.py::compute_chamfer_3d_4d`` and ``evaluate_dataset.py``:

1. the predicted meshes are sampled, each frame independently, ``n_pts_chamfer`` = 100,000 points with
   seed ``44 + frame`` (``sampling.surface_points_per_frame``);
2. ``n_pts_icp`` = 10,000 points of that and of the GT cloud (``surfaces.npy[..., :3]``, no
   normalisation) are kept by one permutation (seed 44) shared by all frames;
3. CD-3D: one ICP per frame (``icp.gradient_icp``, lr 0.01, 200 iterations), then the mean over frames of
   ``chamfer_score`` (10,000 query points per direction, seeds 44 / 45) between the GT frame and the
   aligned 100,000 predicted points;
4. CD-4D: the same with the single ICP of frame 0 applied to every frame;
5. CD-M: 100,000 synchronized points (seed 44, sampled on frame 0, carried by the topology), aligned
   by the frame-0 ICP, against the whole GT cloud (``chamfer.motion_chamfer``).
The dataset score is the plain mean over clips. The leaderboard's "seed=42" is the generation seed of
the method evaluated, not a metric seed. The point counts are parameters so that CPU tests can use
fewer points; a score is ActionBench's only with the defaults (``protocol`` says which was used).
"""

from __future__ import annotations

import numpy as np

from .chamfer import chamfer_score, motion_chamfer
from .icp import Alignment, gradient_icp
from .sampling import subsample, surface_points_per_frame, synchronized_points

PROTOCOL = dict(n_pts_icp=10_000, n_pts_chamfer=100_000, seed=44, icp_iterations=200, icp_lr=0.01)


def actionbench_scores(gt_points, vertices, faces, n_pts_icp: int = 10_000, n_pts_chamfer: int = 100_000,
                       seed: int = 44, icp_iterations: int = 200, icp_lr: float = 0.01, device: str = "cpu",
                       motion: bool = True) -> dict:
    """CD-3D, CD-4D, CD-M of a fixed-topology prediction (T, V, 3) + faces against a GT cloud (T, N, 3+)."""
    gt = np.asarray(gt_points, np.float64)[..., :3]
    if len(gt) != len(vertices):
        raise ValueError(f"ground truth has {len(gt)} frames, the prediction {len(vertices)}")
    pred = surface_points_per_frame(vertices, faces, n_pts_chamfer, seed)
    pred_icp, gt_icp = subsample(pred, n_pts_icp, seed), subsample(gt, n_pts_icp, seed)
    per_frame = [gradient_icp(p, g, icp_lr, icp_iterations, device) for p, g in zip(pred_icp, gt_icp)]
    unified = per_frame[0]  # the reference runs frame 0 again; same inputs, same deterministic result
    cd_3d = np.mean([chamfer_score(a.apply(p), g, seed=seed) for a, p, g in zip(per_frame, pred, gt)])
    cd_4d = np.mean([chamfer_score(unified.apply(p), g, seed=seed) for p, g in zip(pred, gt)])
    out = {"cd_3d": float(cd_3d), "cd_4d": float(cd_4d), "alignment": unified}
    if motion:
        tracked = synchronized_points(vertices, faces, n_pts_chamfer, seed)
        out["cd_m"] = motion_chamfer(unified.apply(tracked.reshape(-1, 3)).reshape(tracked.shape), gt)
    return out


def protocol(**used) -> str:
    """"actionbench" when every count equals the reference's, else "reduced (...)" naming the changes."""
    changed = {k: v for k, v in used.items() if k in PROTOCOL and PROTOCOL[k] != v}
    return "actionbench" if not changed else "reduced (" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")"


__all__ = ["Alignment", "PROTOCOL", "actionbench_scores", "protocol"]
