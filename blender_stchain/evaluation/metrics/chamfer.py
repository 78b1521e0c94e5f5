"""Chamfer scores of ActionBench (facebookresearch/actionmesh@66db12e, ``actionbench/chamfer.py``).

Both are sums of two directed means of *Euclidean* (not squared) nearest-neighbour distances, with
no normalisation of their own: the scale comes from the alignment (``icp``). Nearest neighbours are
exact (a k-d tree, as the reference uses; scipy).
"""

from __future__ import annotations

import numpy as np

from ..errors import need


def kdtree(points):
    cKDTree = need("scipy.spatial", "scipy").cKDTree
    return cKDTree(np.asarray(points, np.float64))


def chamfer_score(pred, gt, n: int = 10_000, seed: int = 44) -> float:
    """Symmetric Chamfer distance of two clouds (P, 3), (Q, 3).

    The query side of each direction is a random subset of at most ``n`` points
    (``RandomState(seed).permutation`` for the prediction, ``seed + 1`` for the ground truth);
    the searched side is the whole other cloud.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    ip = np.random.RandomState(seed=seed).permutation(len(pred))[:n] if 0 < n < len(pred) else np.arange(len(pred))
    ig = np.random.RandomState(seed=seed + 1).permutation(len(gt))[:n] if 0 < n < len(gt) else np.arange(len(gt))
    gt_to_pred = kdtree(pred).query(gt[ig])[0].mean()
    pred_to_gt = kdtree(gt).query(pred[ip])[0].mean()
    return float(gt_to_pred + pred_to_gt)


def motion_chamfer(preds, gts) -> float:
    """CD-M of tracked clouds (T, P, 3) and (T, Q, 3): pairs fixed by nearest neighbours on frame 0,
    then each pair's distance averaged over time, over points, summed over both directions."""
    preds, gts = np.asarray(preds, np.float64), np.asarray(gts, np.float64)
    if len(preds) != len(gts):
        raise ValueError(f"motion chamfer needs the same frame count, got {len(preds)} and {len(gts)}")
    gt_to_pred = kdtree(preds[0]).query(gts[0])[1]
    pred_to_gt = kdtree(gts[0]).query(preds[0])[1]
    d1 = np.linalg.norm(preds[:, gt_to_pred] - gts, axis=-1).mean(axis=0)
    d2 = np.linalg.norm(gts[:, pred_to_gt] - preds, axis=-1).mean(axis=0)
    return float(d1.mean() + d2.mean())
