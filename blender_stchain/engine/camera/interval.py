"""How sure the solved focal length is: a profile of the solve's own cost over the focal.

For an object of small depth seen from far away, a longer lens further back gives nearly the same
picture, so the cost is flat along focal and distance together. The profile walks the focal away
from the solved one on each side, re-solving every pose with the focal held (warm-started, a few
Levenberg-Marquardt iterations), until the cost has risen by the chi-square 95% point (one degree
of freedom) times the noise scale of the matches. That scale is a sandwich estimate, because the
cost is robust and the matches' stated uncertainties are not their real spread:
``kappa = sum w^2 u^2 q / (2 sum w u)`` (q: squared whitened error, u: the Cauchy weight), which is
1 for unit Gaussian errors under least squares. ``CALIBRATION`` widens it for what this cannot see
(correlated and heavy-tailed attention noise, the outlier set chosen at the solved focal); how it
was measured is in ``docs/camera.md`` and ``bench/focal_interval.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .initial import pose_errors
from .models import Pinhole
from .refine import Problem, levenberg_marquardt, objective

CHI2_95 = 3.841  # 95% point of the chi-square distribution with one degree of freedom
CALIBRATION = 5.6  # multiplies CHI2_95 * kappa: the smallest factor (one decimal) holding the true focal in
# 95% of 96 trusted calibration draws, moderate and heavy noise, landmarks hidden behind other parts matched
# as loosely as those facing away (bench/focal_interval.py, seeds 100-111; 1.0 held it in 68%)
MAX_STEP = 1.0  # the profile stops at a factor e either side: beyond that the focal is unknown
PROFILE_ITERATIONS = 8  # LM iterations per profile point (warm-started from the neighbouring point)
SEARCH_STEPS = 6  # profile points per side


def noise_scale(prob: Problem, model: Pinhole, R, t, scale: float) -> float:
    """kappa: the cost's noise variance over its curvature per match, from the residuals (sandwich)."""
    err = pose_errors(model, R, t, prob.X, prob.uv, prob.sigma)
    w = prob.w * prob.active[:, None] * np.isfinite(err)
    q = np.where(np.isfinite(err), err, 0.0) ** 2
    u = 1.0 / (1.0 + q / scale**2)
    den = float((w * u).sum())
    return float((w**2 * u**2 * q).sum()) / (2 * den) if den > 0 else float("nan")


def _cost_at(prob, model: Pinhole, focal: float, R, t, scale):
    """Cost with the focal held at ``focal`` and every pose re-solved from (R, t)."""
    fixed = replace(model, focal=float(focal), free_focal=False)
    _, R, t = levenberg_marquardt(prob, fixed, R, t, scale, PROFILE_ITERATIONS)
    return objective(prob, fixed, R, t, scale), R, t


def _side(prob, model, R, t, scale, base: float, threshold: float, sign: int) -> list[tuple[float, float]]:
    """(log-focal step, cost) points walking out on one side until the cost rises past ``threshold``.

    Steps follow the profile's own curvature (a quadratic cost rises with the step squared), so a
    few points reach the crossing whatever the focal's spread."""
    points, step = [], 0.03
    for _ in range(SEARCH_STEPS):
        cost, R, t = _cost_at(prob, model, model.focal * np.exp(sign * step), R, t, scale)
        points.append((step, cost))
        rise = cost - base
        if step >= MAX_STEP or threshold <= rise < 1.2 * threshold:
            break
        grow = np.sqrt(1.1 * threshold / rise) if rise > 0 else 4.0  # aim just past the crossing
        step = min(MAX_STEP, step * float(np.clip(grow, 0.3, 4.0)))
    return points


def _crossing(points, zero: float, base: float, threshold: float) -> float:
    """Smallest step where the rise reaches ``threshold`` (linear in the root of the rise between the
    points that bracket it, exact for a quadratic profile); MAX_STEP when it never does."""
    pts = sorted([(0.0, zero)] + points)
    for (s0, c0), (s1, c1) in zip(pts, pts[1:]):
        if c1 - base >= threshold:
            r0, r1 = np.sqrt(max(c0 - base, 0.0)), np.sqrt(c1 - base)
            return s0 + (s1 - s0) * float(np.clip((np.sqrt(threshold) - r0) / max(r1 - r0, 1e-12), 0.0, 1.0))
    s, c = pts[-1]
    if s < MAX_STEP and c - base > 0.25 * threshold:  # the steps ran out short of it: extrapolate
        return min(MAX_STEP, s * float(np.sqrt(threshold / (c - base))))
    return MAX_STEP


def focal_interval(prob: Problem, model: Pinhole, R, t, scale: float) -> tuple[float, float]:
    """(lo, hi) footage pixels holding the true focal about 95% of the time, for the cost of ``prob``
    at robust scale ``scale`` that (model, R, t) minimise."""
    kappa = noise_scale(prob, model, R, t, scale)
    if not np.isfinite(kappa) or kappa <= 0:
        return (0.0, float("inf"))
    threshold = CALIBRATION * CHI2_95 * kappa
    zero, R0, t0 = _cost_at(prob, model, model.focal, R, t, scale)
    sides = [_side(prob, model, R0, t0, scale, zero, threshold, sign) for sign in (-1, 1)]
    base = min([zero] + [c for side in sides for _, c in side])  # the profile's minimum may lie off the solve's
    lo, hi = (_crossing(side, zero, base, threshold) for side in sides)
    return float(model.focal * np.exp(-lo)), float(model.focal * np.exp(hi))
