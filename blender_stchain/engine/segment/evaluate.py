"""DAVIS J&F for a folder of predicted masks against ground truth (numpy only).

J (region similarity) is the intersection over union of the two masks. F (contour accuracy) is the
F-measure of boundary precision and recall: boundary pixels as the DAVIS toolkit draws them (a pixel whose
right, lower or lower-right neighbour differs), matched within a disk of radius
ceil(0.008 * image diagonal). Both are 1 when both masks are empty. As in the DAVIS 2017 toolkit, the
first and last frames are left out unless ``all_frames`` (the first carries the given annotation there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError
from .masks_io import mask_files, read_mask

BOUND_TH = 0.008


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """DAVIS ``seg2bmap`` at the mask's own size: True where the right, lower or lower-right neighbour differs."""
    m = mask.astype(bool)
    e, s, se = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = m[:, 1:], m[1:, :], m[1:, 1:]
    b = (m ^ e) | (m ^ s) | (m ^ se)
    b[-1, :] = m[-1, :] ^ e[-1, :]
    b[:, -1] = m[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disk x^2 + y^2 <= radius^2 (skimage's ``disk``)."""
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius:
                continue
            ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            out[yd, xd] |= mask[ys, xs]
    return out


def f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape))
    fb, gb = boundary(pred), boundary(gt)
    n_fg, n_gt = int(fb.sum()), int(gb.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0  # precision 1 / recall 0, or the reverse
    precision = float((fb & dilate_disk(gb, int(radius))).sum() / n_fg)
    recall = float((gb & dilate_disk(fb, int(radius))).sum() / n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Score:
    j: float  # mean region similarity
    f: float  # mean contour accuracy
    frames: int
    per_frame: tuple[tuple[str, float, float], ...]  # (ground-truth file name, J, F)

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def line(self) -> str:
        return f"J&F {self.jf:.4f}  J {self.j:.4f}  F {self.f:.4f}  ({self.frames} frames)"


def evaluate(pred_dir, gt_dir, all_frames: bool = False) -> Score:
    """Pair masks by order (the folders must hold one mask per frame each) and average J and F."""
    pred, gt = mask_files(pred_dir, "--pred"), mask_files(gt_dir, "--gt")
    if len(pred) != len(gt):
        raise FootageError(f"--pred {pred_dir} has {len(pred)} masks but --gt {gt_dir} has {len(gt)}; "
                           "give one mask per frame in both")
    pairs = list(zip(pred, gt))
    if not all_frames and len(pairs) > 2:
        pairs = pairs[1:-1]
    rows = []
    for p, g in pairs:
        pm, gm = read_mask(p), read_mask(g)
        if pm.shape != gm.shape:
            raise FootageError(f"{p.name} is {pm.shape[1]}x{pm.shape[0]} but {g.name} is {gm.shape[1]}x{gm.shape[0]}; "
                               "masks must be at footage size")
        rows.append((Path(g).name, jaccard(pm, gm), f_measure(pm, gm)))
    j = float(np.mean([r[1] for r in rows]))
    f = float(np.mean([r[2] for r in rows]))
    return Score(j, f, len(rows), tuple(rows))
