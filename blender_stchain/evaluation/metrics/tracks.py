"""TAP-Vid 2D-track metrics (Doersch et al. 2022; google-deepmind/tapnet@26a2b62,
``tapnet/evaluation_datasets.py::compute_tapvid_metrics``), for one clip.

Definitions reproduced: positions are compared in a 256 x 256 frame (the footage coordinates scaled
per axis), thresholds 1, 2, 4, 8, 16 px; "first" query mode: the query is a track's first visible
frame and only later frames are evaluated. delta_avg = mean over thresholds of the share of GT-visible
points within the threshold (occlusion prediction ignored); occlusion accuracy = share of evaluated
points whose predicted visibility equals the GT's; Jaccard = TP / (GT-visible + FP) where a TP is
within the threshold and visible in both, an FP is predicted visible but GT-occluded or too far;
average Jaccard = mean over thresholds.

How a prediction gets its tracks is ours (this project is not given query points): see ``pair_queries``.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (1, 2, 4, 8, 16)
EVAL_SIZE = 256


def first_visible(gt_visible) -> np.ndarray:
    """Query frame of each track (T, L) -> (L,): its first visible frame (-1 when never visible)."""
    vis = np.asarray(gt_visible, bool)
    return np.where(vis.any(0), vis.argmax(0), -1)


def tapvid_metrics(gt_tracks, gt_visible, pred_tracks, pred_visible, image_size) -> dict:
    """TAP-Vid metrics of one clip; tracks (T, L, 2) footage pixels, visibility (T, L) bool.

    Tracks never visible in the GT are dropped (they have no query). Returns numbers in [0, 1].
    """
    gt_vis, pr_vis = np.asarray(gt_visible, bool), np.asarray(pred_visible, bool)
    query = first_visible(gt_vis)
    keep = query >= 0
    gt_vis, pr_vis, query = gt_vis[:, keep], pr_vis[:, keep], query[keep]
    scale = EVAL_SIZE / np.asarray(image_size, np.float64)
    gt_xy = np.asarray(gt_tracks, np.float64)[:, keep] * scale
    pr_xy = np.asarray(pred_tracks, np.float64)[:, keep] * scale
    T = gt_vis.shape[0]
    evaluated = np.arange(T)[:, None] > query[None]  # frames after the query frame
    occlusion_accuracy = ((pr_vis == gt_vis) & evaluated).sum() / max(evaluated.sum(), 1)
    dist2 = ((pr_xy - gt_xy) ** 2).sum(-1)
    visible = gt_vis & evaluated
    within, jaccard = [], []
    for th in THRESHOLDS:
        close = dist2 < th * th
        correct = close & gt_vis
        within.append((correct & evaluated).sum() / max(visible.sum(), 1))
        tp = (correct & pr_vis & evaluated).sum()
        fp = (((~gt_vis) & pr_vis) | ((~close) & pr_vis)) & evaluated
        jaccard.append(tp / max(visible.sum() + fp.sum(), 1))
    return {
        "delta_avg": float(np.mean(within)),
        "occlusion_accuracy": float(occlusion_accuracy),
        "average_jaccard": float(np.mean(jaccard)),
        **{f"pts_within_{t}": float(w) for t, w in zip(THRESHOLDS, within)},
        **{f"jaccard_{t}": float(j) for t, j in zip(THRESHOLDS, jaccard)},
        "tracks": int(keep.sum()),
    }


def pair_queries(gt_tracks, gt_visible, candidate_xy_at, candidate_visible_at) -> np.ndarray:
    """For each GT track, the predicted point nearest (in pixels) to its query among those the
    prediction sees at the query frame: our stand-in for TAP-Vid's query input.

    ``candidate_xy_at(t)`` -> (N, 2) and ``candidate_visible_at(t)`` -> (N,) bool give the predicted
    points of frame t. Returns (L,) indices (-1 for tracks never visible or with no visible candidate).
    """
    query = first_visible(gt_visible)
    out = np.full(len(query), -1, np.int64)
    for t in np.unique(query[query >= 0]):
        xy, vis = np.asarray(candidate_xy_at(t), np.float64), np.asarray(candidate_visible_at(t), bool)
        if not vis.any():
            continue
        ids = np.flatnonzero(vis)
        rows = np.flatnonzero(query == t)
        d = ((np.asarray(gt_tracks, np.float64)[t, rows, None] - xy[None, ids]) ** 2).sum(-1)
        out[rows] = ids[d.argmin(1)]
    return out
