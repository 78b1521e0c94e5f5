"""The pipeline's camera stage: attention matches -> solve -> visibility -> refine -> trust verdict.

A silently wrong camera is the worst outcome for a Blender user (the mesh stops lining up with the
footage and nothing says why), so the stage either returns a camera that ``plausible`` accepts or
a default front camera marked ``estimated=False`` with the reason, and says so in a warning event
and in the result metadata.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...contracts.settings import Settings
from .silhouette import Silhouette, mask_fields, outline_points
from .solution import CameraSolution, absurd, default_camera, plausible
from .solve import solve_long
from .tracks import tracks_2d

MIN_CONFIDENCE = 0.05  # attention peaks holding less of the map than this are no match at all
HIDDEN_WEIGHT = 0.1  # weight of a landmark facing away or hidden under the first pose
OUTLINE_WEIGHT = 2.0  # an outline point against matches of typical uncertainty: 0.5 left the worst frame at 1.01
# deg (moderate) / 1.48 (heavy) on held-out draws with the focal given, 2.0 at 0.81 / 1.14, and masks 3 or 10 px
# off did not reverse it (bench/camera_known_focal.py, docs/camera.md)
NOT_ESTIMATED = "camera not estimated"
POORLY_DETERMINED = "focal length poorly determined"


class Matches:
    """What the camera needs from all frames, (T, L, ...) float32 arrays filled window by window:
    allocated once, so the only memory that grows with the clip is ~28 bytes per landmark and frame."""

    def __init__(self, frames: int, landmarks: int):
        self.points3d = np.zeros((frames, landmarks, 3), np.float32)
        self.points2d = np.zeros((frames, landmarks, 2), np.float32)  # footage pixels
        self.weights = np.zeros((frames, landmarks), np.float32)  # 0 = no match
        self.sigma = np.ones((frames, landmarks), np.float32)  # uncertainty of points2d, footage pixels

    def put(self, start: int, p3, p2, w, sigma=None) -> None:
        stop = start + len(p3)
        self.points3d[start:stop], self.points2d[start:stop], self.weights[start:stop] = p3, p2, w
        if sigma is not None:
            self.sigma[start:stop] = sigma


def window_matches(out, clip, cmap, first: int, chain_confidence):
    """A window's image positions in footage pixels, their weights and uncertainties (footage px).

    Weight = attention peak mass x chain confidence; peaks under ``MIN_CONFIDENCE`` (flat maps, as
    random weights give) are no match. The uncertainty goes through the crop and footage scales.
    """
    xy = out.image_xy.float().cpu().numpy()[first:]
    conf = out.image_confidence.float().cpu().numpy()[first:]
    footage = clip.to_footage_pixels(cmap.to_footage(xy))
    px = 1.0 / (float(np.mean(cmap.scale)) * float(np.mean(clip.scale)))  # footage px per model px
    sigma = None if out.image_sigma is None else out.image_sigma.float().cpu().numpy()[first:] * px
    return footage, np.where(conf >= MIN_CONFIDENCE, conf * chain_confidence, 0.0), sigma


def estimate(points3d, points2d, weights, sigma, image_size, vertices, faces, landmark_ids, focal_px=None,
             smoothness=0.1, masks=None, progress=None,
             focal_max_width: float = Settings.camera_focal_max_width) -> CameraSolution:
    """Solve, lower the weight of landmarks the first camera sees from behind or hidden, refine
    (with the outline term when ``masks(lo, hi)`` yields the masks of frames lo..hi), then judge
    the result. A solved focal and its interval come from the matches before the outline joins, which
    then refines the poses at that focal: masks a few pixels off move a focal the outline pins (masks
    grown by 3 px: median focal error 0.7% -> 3.0% on moderate noise, its interval holding it in 83% of
    the draws instead of 100%; ``bench/camera_known_focal.py``, docs/camera.md), while the poses gain
    from the outline either way. A first camera no lens has (``absurd``) is judged as it is: it cannot say which
    landmarks it sees, and on the attention-like scenes of ``tests/engine/attention_matches.py``
    (octopus and mushroom, static and orbiting, moderate / heavy / garbage noise, seeds 0-2: 36 runs,
    11 absurd first cameras) refining one never gave a plausible camera: it would only cost time.
    The refinement ends on the Cauchy cost, without the least-squares polish: landmarks facing away
    sit 3.6-5.5 match uncertainties off, across the polish's inlier cut, and least squares on those
    inside it took the worst frame's rotation from 0.97 to 1.22 deg (true focal given, moderate noise,
    seeds 0-7 of ``tests/engine/test_camera_focal.py``). ``progress(fraction, message)`` (it may raise
    to cancel). A solved focal whose 95% interval is wider than ``focal_max_width`` of it gets a
    "focal length poorly determined" warning."""
    progress = progress or (lambda fraction, message: None)

    def span(lo, hi, what):
        return lambda d, n: progress(lo + (hi - lo) * d / n, f"{what}: {d}/{n}")

    T = len(points3d)
    first = solve_long(points3d, points2d, weights, image_size, focal_px=focal_px, uncertainty_px=sigma,
                       smoothness=smoothness, focal_interval=False, progress=span(0.0, 0.4, "solving the camera"))
    if absurd(first) is not None:  # no refinement brought one back (36 attention-like scenes): judge it now
        return trusted_or_default(first, T, image_size)
    _, seen = tracks_2d(vertices, faces, landmark_ids, first.K, first.world_to_camera, image_size,
                        progress=span(0.4, 0.7, "checking which landmarks the camera sees"))
    reweighted = np.asarray(weights) * np.where(seen > 0, 1.0, HIDDEN_WEIGHT)

    def refine(initial, focal, silhouette, lo, hi):
        return solve_long(points3d, points2d, reweighted, image_size, focal_px=focal, uncertainty_px=sigma,
                          initial=initial, silhouette=silhouette, smoothness=smoothness, polish=False,
                          progress=span(lo, hi, "refining the camera"))

    outline = masks and _outline_term(masks, vertices, first, image_size)
    if focal_px is None and outline:
        sol = refine(first, None, None, 0.7, 0.85)
        sol = replace(refine(sol, float(sol.K[0, 0]), outline, 0.85, 1.0), focal_interval=sol.focal_interval)
    else:
        sol = refine(first, focal_px, outline, 0.7, 1.0)
    sol = replace(sol, focal_range=first.focal_range, focal_source="solved" if focal_px is None else "given")
    sol = trusted_or_default(sol, T, image_size)
    if sol.estimated and poorly_determined(sol, focal_max_width):
        lo, hi = sol.focal_interval
        sol = replace(sol, warnings=[*sol.warnings, f"camera: {POORLY_DETERMINED} (focal {sol.K[0, 0]:,.0f} px, "
                                     f"95% interval {lo:,.0f}-{hi:,.0f}): give the lens (--focal-mm, or Use clip's "
                                     "camera in Blender)"])
    return sol


def poorly_determined(sol: CameraSolution, max_width: float) -> bool:
    """The solved focal's 95% interval is wider than ``max_width`` of the focal."""
    if sol.focal_interval is None:
        return False
    lo, hi = sol.focal_interval
    return (hi - lo) / float(sol.K[0, 0]) > max_width


def known_focal(settings, clip) -> tuple[float | None, str]:
    """The focal (footage px) and its source: a focal in pixels or a lens in mm given by the user (or
    Blender's clip camera), else the footage's own metadata (unless ``camera_footage_lens`` is "ignore"),
    else None ("solved")."""
    W, H = (int(v) for v in clip.source_size)
    if settings.camera_focal_px is not None:
        return float(settings.camera_focal_px), settings.camera_focal_source
    if settings.camera_focal_mm is not None:
        return settings.camera_focal_mm / settings.camera_sensor_mm * W, settings.camera_focal_source
    lens = clip.lens() if settings.camera_footage_lens == "use" else None
    if lens is not None:
        return lens.focal_px(W, H), f"footage metadata ({lens.tag} {lens.focal_35mm:g} mm)"
    return None, "solved"


def run(matches: Matches, clip, vertices, faces, landmark_ids, settings, rep, use_masks=True) -> CameraSolution:
    """The pipeline's one call: matches of every window -> a camera the result can carry, with
    progress lines and every warning (a "camera not estimated" one included) as events. The clip's
    masks feed the outline term unless ``use_masks`` is False."""
    size = tuple(int(v) for v in clip.source_size)
    focal, source = known_focal(settings, clip)
    rep.progress("camera", 0, message="solving the camera" if focal is None else
                 f"solving the camera with the focal length {focal:,.0f} px ({source})")
    sol = estimate(matches.points3d, matches.points2d, matches.weights, matches.sigma, size, vertices, faces,
                   landmark_ids, focal_px=focal, smoothness=settings.camera_smoothness,
                   masks=_clip_masks(clip) if use_masks else None,
                   progress=lambda fraction, message: rep.progress("camera", 0.5 * fraction, message=message),
                   focal_max_width=settings.camera_focal_max_width)
    if sol.estimated:
        sol = replace(sol, focal_source=source)
    for w in sol.warnings:
        rep.warning(w)
    median = _nanmedian(sol.reprojection_error_px)
    rep.progress("camera", 0.5, message=f"camera: median error {median:.2f} px" if sol.estimated and median
                 is not None else f"camera: {NOT_ESTIMATED}")
    return sol


def _outline_term(masks, vertices, first: CameraSolution, image_size):
    """``silhouette(lo, hi)`` for ``solve_long``: outline vertices under the first camera and
    low-resolution mask distance fields, built one chunk at a time (memory flat in clip length)."""
    def term(lo, hi):
        fields, scale = mask_fields(masks(lo, hi), image_size)
        points = np.concatenate([outline_points(np.asarray(vertices[a:a + 16]), first.K, first.world_to_camera[a:a + 16])
                                 for a in range(lo, hi, 16)])  # 16 frames of vertices at a time
        return Silhouette(points, fields, OUTLINE_WEIGHT / first.match_sigma_px**2, scale)

    return term


def _clip_masks(clip):
    """``masks(lo, hi)`` reading the clip's per-frame masks one at a time (a mask folder decodes no
    frame); None without them."""
    if clip.mask_kind == "none" or clip.mask_area is None:  # no per-frame masks
        return None
    return lambda lo, hi: (clip.read_masks(i, i + 1)[0] for i in range(lo, hi))


def trusted_or_default(sol: CameraSolution, T: int, image_size) -> CameraSolution:
    why = plausible(sol)
    if why is None:
        return sol
    return replace(default_camera(T, image_size), estimated=False, reason=why, focal_source="default camera",
                   warnings=[*sol.warnings, f"{NOT_ESTIMATED} ({why}); using a default front camera"])


def metadata(sol: CameraSolution) -> dict:
    """The result's ``camera`` entry: status first, so a reader cannot miss a default camera."""
    status = sol.frame_status or []
    return {
        "status": "estimated" if sol.estimated else "not estimated",
        "reason": sol.reason,
        "median_error_px": _nanmedian(sol.reprojection_error_px),
        "median_error_all_matches_px": _nanmedian(sol.match_error_px),
        "median_inlier_share": _nanmedian(sol.inlier_share),
        "frames_ok": int(sum(s == "ok" for s in status)) if status else None,
        "focal_px": float(sol.K[0, 0]),
        "focal_px_interval": None if sol.focal_interval is None else [float(v) for v in sol.focal_interval],
        "focal_source": sol.focal_source,
        "warnings": list(sol.warnings),
    }


def _nanmedian(x) -> float | None:
    if x is None:
        return None
    x = np.asarray(x, np.float64)
    return float(np.median(x[np.isfinite(x)])) if np.isfinite(x).any() else None


__all__ = ["Matches", "Silhouette", "estimate", "known_focal", "metadata", "poorly_determined", "run",
           "trusted_or_default", "window_matches"]
