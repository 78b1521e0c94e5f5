"""What a camera solve returns and whether it can be trusted; the solver's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_MATCHES = 6  # a calibrated DLT needs 6 points in general position
BEHIND_COST = 1e9  # cost of a matched point behind the camera
RANSAC_ELEMENTS = 500_000  # working set of one RANSAC chunk: ~90 MB
SCORE_MATCHES = 256  # RANSAC hypotheses are scored on this many random matches per frame


@dataclass
class CameraSolution:
    """Solved camera: ``K`` in footage pixels, OpenCV ``world_to_camera`` per frame."""

    K: np.ndarray  # (3, 3)
    world_to_camera: np.ndarray  # (T, 4, 4)
    reprojection_error_px: np.ndarray  # (T,) median error of the frame's inliers (NaN: none)
    inliers: np.ndarray  # (T,) valid matches within ``inlier_px`` of their projection
    image_size: tuple[int, int]  # (W, H)
    warnings: list[str] = field(default_factory=list)


def plausible(solution: CameraSolution, min_inlier_share: float = 0.2, fov_deg=(5.0, 140.0)) -> str | None:
    """Why a solution cannot be trusted (None when it can): non-finite, few inliers, absurd focal."""
    W, H = solution.image_size
    if not (np.isfinite(solution.K).all() and np.isfinite(solution.world_to_camera).all()):
        return "the solve did not converge"
    fov = np.degrees(2 * np.arctan(0.5 * max(W, H) / solution.K[0, 0]))
    if not fov_deg[0] <= fov <= fov_deg[1]:
        return f"the solved field of view ({fov:.1f} deg) is implausible"
    share = float(np.mean(np.nan_to_num(solution.reprojection_error_px, nan=np.inf) < np.inf))
    if share < min_inlier_share:
        return f"only {share:.0%} of the frames have consistent 2D-3D matches"
    return None


def default_camera(num_frames: int, image_size, fov_deg: float = 40.0, margin: float = 1.3) -> CameraSolution:
    """A front camera framing the backbone's [-1, 1] object cube (object y-up, looking down -z)."""
    W, H = image_size
    f = 0.5 * max(W, H) / np.tan(np.radians(fov_deg) / 2)
    distance = margin * f / (0.5 * min(W, H)) + 1.0
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    w2c = np.eye(4)
    w2c[:3, :3] = np.diag([1.0, -1.0, -1.0])
    w2c[2, 3] = distance
    return CameraSolution(K, np.repeat(w2c[None], num_frames, 0), np.full(num_frames, np.nan),
                          np.zeros(num_frames, np.int64), (int(W), int(H)))

@dataclass(frozen=True)
class SolveSettings:
    focal_fov_deg: tuple[float, ...] = (20, 30, 40, 50, 60, 75, 90, 110)  # focal candidates (horizontal FOV)
    ransac_hypotheses: int = 96  # 6-point samples per frame and focal candidate
    ransac_threshold_px: float = 0.01  # MSAC threshold, as a share of max(W, H)
    robust_scale_px: float = 2.0  # final Cauchy scale of the reprojection loss
    inlier_px: float = 4.0  # error under which a match counts as an inlier (reporting)
    iterations: int = 40  # LM iterations per Cauchy scale
    smoothness: float = 0.1  # weight of the second-difference pose prior (0 = off)
    solve_principal_point: bool = False  # principal point free instead of the image centre
    coplanar_ratio: float = 1e-3  # smallest / largest spread of the 3D points below this = coplanar
    polish: bool = True  # finish with least squares on the inliers of the robust solve
    seed: int = 0
