"""What a camera solve returns and whether it can be trusted; the solver's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_MATCHES = 6  # a calibrated DLT needs 6 points in general position
BEHIND_COST = 1e9  # cost of a matched point behind the camera
RANSAC_ELEMENTS = 500_000  # working set of one RANSAC chunk: ~90 MB
SCORE_MATCHES = 256  # RANSAC hypotheses are scored on this many random matches per frame
FOCAL_FRAMES = 8  # focal candidates are compared on this many frames spread over the clip

# Per-frame status (``CameraSolution.frame_status``)
OK, FEW_INLIERS, NO_MATCHES, JUMP = "ok", "few inliers", "no matches", "jump"


@dataclass(frozen=True)
class CameraSolution:
    """Solved camera: ``K`` in footage pixels, OpenCV ``world_to_camera`` per frame, and the
    evidence ``plausible`` judges it by (errors over *all* weighted matches, inlier shares, per-frame
    status, the focal search range and the object's size). Frozen: a later stage makes a new one
    (``dataclasses.replace``), so a solution handed on never changes under its holder."""

    K: np.ndarray  # (3, 3)
    world_to_camera: np.ndarray  # (T, 4, 4)
    reprojection_error_px: np.ndarray  # (T,) median error of the frame's inliers (NaN: none)
    inliers: np.ndarray  # (T,) valid matches within ``inlier_px`` (match uncertainties) of their projection
    image_size: tuple[int, int]  # (W, H)
    warnings: list[str] = field(default_factory=list)
    match_error_px: np.ndarray | None = None  # (T,) weighted median error over all weighted matches
    inlier_share: np.ndarray | None = None  # (T,) weighted share of the frame's matches that are inliers
    frame_status: list[str] | None = None  # (T,) OK, FEW_INLIERS, NO_MATCHES or JUMP
    focal_range: tuple[float, float] | None = None  # searched focal range (px); None when it was given
    object_radius: float | None = None  # robust radius of the matched 3D points (object units)
    object_centre: np.ndarray | None = None  # (3,) their median, where the distance is measured from
    match_sigma_px: float = 1.0  # typical match uncertainty the thresholds were scaled by
    estimated: bool = True  # False: a default camera stands in (``reason`` says why)
    reason: str | None = None
    focal_interval: tuple[float, float] | None = None  # (lo, hi) px holding the true focal ~95% of the
    # time (``interval``); None when the focal was given
    focal_source: str = "solved"  # where the focal came from: "solved", "given", "clip camera", "footage ..."


def _distances(solution: CameraSolution) -> np.ndarray:
    """Camera centre to the object's centre (its origin when unknown), per frame."""
    R, t = solution.world_to_camera[:, :3, :3], solution.world_to_camera[:, :3, 3]
    centre = np.zeros(3) if solution.object_centre is None else solution.object_centre
    return np.linalg.norm(-np.einsum("tji,tj->ti", R, t) - centre, axis=-1)


def absurd(solution: CameraSolution, fov_deg=(5.0, 140.0)) -> str | None:
    """Why a camera is no camera at all (non-finite, or a field of view no lens has), else None.
    Such a camera cannot even say which landmarks it sees."""
    W, H = solution.image_size
    if not (np.isfinite(solution.K).all() and np.isfinite(solution.world_to_camera).all()):
        return "the solve did not converge"
    fov = np.degrees(2 * np.arctan(0.5 * max(W, H) / float(solution.K[0, 0])))
    if not fov_deg[0] <= fov <= fov_deg[1]:
        return f"the solved field of view ({fov:.1f} deg) is implausible"
    return None


# Median error over all matches, in stated match uncertainties, above which the matches disagree with the
# camera. Attention-like matches under heavy noise sit at 3.3-5.4 with a right camera (the focal given: worst
# rotation 2.8 deg, centre 5.1% of the distance); matches unrelated to the 3D points at 20.5-23.2. The limit
# sits between them on a log scale (docs/camera.md).
MAX_MATCH_ERROR = 10.0


def plausible(solution: CameraSolution, min_inlier_share: float = 0.2, fov_deg=(5.0, 140.0),
              max_bad_frames: float = 0.2, max_jump_frames: float = 0.05, min_object_px: float = 0.01,
              focal_edge: float = 0.02, max_match_error: float = MAX_MATCH_ERROR) -> str | None:
    """Why a solution cannot be trusted (None when it can), as a careful person would judge it:
    non-finite, absurd or range-edge focal, too few inliers in too many frames, pose jumps the
    matches do not support, an object too small in the image for its size and the camera's
    distance (a speck tens of thousands of units away), or matches that disagree with the camera."""
    why = absurd(solution, fov_deg)
    if why is not None:
        return why
    W, H = solution.image_size
    focal = float(solution.K[0, 0])
    share = float(np.mean(np.nan_to_num(solution.reprojection_error_px, nan=np.inf) < np.inf))
    if share < min_inlier_share:
        return f"only {share:.0%} of the frames have consistent 2D-3D matches"
    if solution.focal_range is not None:
        lo, hi = solution.focal_range
        if not lo * (1 + focal_edge) < focal < hi * (1 - focal_edge):
            return (f"the focal length ({focal:.0f} px) is at the edge of the searched range "
                    f"({lo:.0f}-{hi:.0f} px); give the focal length if it is known")
    status = solution.frame_status
    if status is not None:
        bad = np.mean([s in (FEW_INLIERS, NO_MATCHES) for s in status])
        if bad > max_bad_frames:
            return f"{bad:.0%} of the frames have too few 2D-3D matches consistent with the camera"
        jumps = np.mean([s == JUMP for s in status])
        if jumps > max_jump_frames:
            return f"the camera jumps between neighbouring frames in {jumps:.0%} of the frames without support"
    if solution.object_radius is not None:
        projected = focal * solution.object_radius / np.maximum(_distances(solution), 1e-12)
        size = float(np.median(projected)) / max(W, H)
        if size < min_object_px:
            return (f"the object would span only {100 * size:.2f}% of the image (camera "
                    f"{np.median(_distances(solution)):.3g} units away): the matches carry no depth")
        if np.any(_distances(solution) < solution.object_radius):
            return "the camera would sit inside the object"
    if solution.match_error_px is not None and np.isfinite(solution.match_error_px).any():
        error = float(np.nanmedian(solution.match_error_px)) / solution.match_sigma_px
        if error > max_match_error:
            return (f"the matches disagree with the camera (median error {error:.1f} match uncertainties "
                    f"over all matches)")
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
    return CameraSolution(K=K, world_to_camera=np.repeat(w2c[None], num_frames, 0),
                          reprojection_error_px=np.full(num_frames, np.nan), inliers=np.zeros(num_frames, np.int64),
                          image_size=(int(W), int(H)))


@dataclass(frozen=True)
class SolveSettings:
    """Thresholds are in match uncertainties: pixels when ``solve`` gets no ``uncertainty_px``."""

    focal_fov_deg: tuple[float, ...] = (20, 30, 40, 50, 60, 75, 90, 110)  # focal candidates (horizontal FOV)
    ransac_hypotheses: int = 96  # 6-point samples per frame and focal candidate
    ransac_threshold_px: float = 0.01  # MSAC threshold without uncertainties, as a share of max(W, H)
    ransac_threshold_sigma: float = 3.0  # MSAC threshold with uncertainties (match uncertainties)
    robust_scale_px: float = 2.0  # final Cauchy scale of the reprojection loss
    inlier_px: float = 4.0  # error under which a match counts as an inlier
    iterations: int = 40  # LM iterations per Cauchy scale
    smoothness: float = 0.1  # weight of the second-difference pose prior (0 = off)
    solve_principal_point: bool = False  # principal point free instead of the image centre
    coplanar_ratio: float = 1e-3  # smallest / largest spread of the 3D points below this = coplanar
    polish: bool = True  # finish with least squares on the inliers of the robust solve
    min_frame_inliers: float = 0.3  # weighted inlier share under which a frame's status is FEW_INLIERS
    jump_deg: float = 5.0  # a neighbour step over this (and 4x the clip's median step) is a jump ...
    jump_distance: float = 0.05  # ... or a centre step over this share of the camera distance
    focal_interval: bool = True  # profile the cost over the focal for its 95% interval (a free focal only)
    seed: int = 0
