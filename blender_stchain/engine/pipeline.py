"""``run(job, on_event, cancel) -> Path``: footage in, ``result.safetensors`` out (DESIGN 2).

Data flows one way: footage -> shared crop -> anchor (stage 0 + surface) -> windows (chain or the
ActionMesh baseline) -> dense motion -> camera -> result file. Each finished window streams to the
result's spool, so memory stays flat in clip length; the file appears atomically at the end, and a
cancel or failure leaves nothing behind.
"""

from __future__ import annotations

import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..contracts.errors import NumericalError, OutOfMemory, out_of_memory
from ..contracts.events import Reporter
from ..contracts.job import JobSpec
from ..contracts.result import ResultWriter
from . import camera, deform
from .backbone import load_backbone
from .chain.baseline import baseline_window
from .chain.window import track_window
from .chain.windows import choose_anchor, plan_windows
from .footage import open_footage
from .footage.preprocess import CropMap, apply_crop, clip_crop_map
from .geometry import surface
from .memory import pin_heap, release_heap
from .weights.preflight import require

SMOKE = "SMOKE TEST: random weights (make-random), not a reconstruction; get the real weights with " \
        "`python -m blender_stchain weights download`"
# Relative stage costs for the ETA ("windows" per window), from the demo (small, fast, CPU): anchor ~160 s,
# surface ~190 s, one chain window ~320 s, camera ~30 s; ActionMesh windows ~8.6x a chain window (bench).
# Only the ratios matter: the pace itself is measured as the job runs (contracts.events.Reporter).
PLANS = {
    "chain": {"load": 1.0, "anchor": 4.0, "surface": 4.0, "windows": 8.0, "camera": 1.0, "write": 0.5},
    "actionmesh": {"load": 1.0, "anchor": 4.0, "surface": 4.0, "windows": 64.0, "camera": 1.0, "write": 0.5},
}


class Tracks:
    """What the camera needs from all frames, (T, L, ...) float32 arrays filled window by window:
    allocated once, so the only memory that grows with the clip is ~24 bytes per landmark and frame."""

    def __init__(self, frames: int, landmarks: int):
        self.points3d = np.zeros((frames, landmarks, 3), np.float32)
        self.points2d = np.zeros((frames, landmarks, 2), np.float32)  # footage pixels
        self.weights = np.zeros((frames, landmarks), np.float32)  # 0 = no match

    def put(self, start: int, p3, p2, w) -> None:
        stop = start + len(p3)
        self.points3d[start:stop], self.points2d[start:stop], self.weights[start:stop] = p3, p2, w


def run(job: JobSpec, on_event=None, cancel=None, backbones=None) -> Path:
    """``backbones``: a loader with ``load_backbone``'s signature; a long-lived batch worker passes its
    cache so the weights load once for many clips (same models, same result)."""
    pin_heap()
    settings = job.resolved_settings()
    rep = Reporter(on_event, cancel, PLANS[job.method])
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    require(job.weights, job.method, job.allow_random_weights)  # weights before a frame is decoded
    rep.progress("load", 0, message="reading footage")
    with warnings.catch_warnings():  # footage warnings travel as events below
        warnings.simplefilter("ignore")
        clip = open_footage(job.footage, masks=job.masks, frames=job.frames)
    try:
        return _run_clip(job, clip, settings, rep, seconds, t0, backbones or load_backbone)
    finally:
        clip.close()


def _run_clip(job, clip, settings, rep, seconds, t0, load) -> Path:
    for w in clip.warnings:
        rep.warning(w)
    backbone = load(job.weights, job.device, job.precision, job.method, job.allow_random_weights)
    if backbone.is_random:
        rep.warning(SMOKE)
    cmap = clip_crop_map(clip)
    windows = plan_windows(clip.count, settings.window_size)
    rep.resize("windows", PLANS[job.method]["windows"] * len(windows))
    anchor_index = choose_anchor(_mask_areas(clip), windows[0], settings.anchor_frame)
    seconds["load"] = time.perf_counter() - t0
    rep.progress("load", 1, message="weights loaded")
    writer = ResultWriter(job.out)
    try:
        with backbone.autocast():
            t = time.perf_counter()
            anchor_mesh, anchor_latent = _retry_smaller(
                _anchor, backbone, clip, cmap, anchor_index, job.method, settings=settings, rep=rep,
                progress=lambda i, n: _anchor_progress(rep, i, n))
            seconds["anchor"] = time.perf_counter() - t
            rep.progress("surface", 1, message=f"anchor mesh: {len(anchor_mesh.vertices)} vertices")
            landmark_ids = deform.farthest_point_landmarks(anchor_mesh.vertices, settings.landmarks)
            t = time.perf_counter()
            tracks = _run_windows(backbone, clip, cmap, windows, anchor_index, anchor_latent, anchor_mesh,
                                  landmark_ids, settings, rep, writer, job.method)
            seconds["windows"] = time.perf_counter() - t
        t = time.perf_counter()
        cam = _solve_camera(tracks, clip, settings, rep)
        if settings.camera_mode == "camera_moves":
            cam = _move_camera(cam, tracks, writer)
        tracks2d, visible = camera.tracks_2d(writer.spooled("vertices"), anchor_mesh.faces, landmark_ids,
                                             cam.K, cam.world_to_camera, _footage_size(clip),
                                             progress=_span(rep, "camera", 0.5, 1.0, "projecting the tracks"))
        seconds["camera"] = time.perf_counter() - t
        rep.progress("write", 0, message="writing the result")
        meta = _metadata(job, settings, backbone, clip, anchor_index, seconds, cam)
        path = writer.finish(meta, faces=anchor_mesh.faces, K=cam.K, image_size=np.array(_footage_size(clip)),
                             world_to_camera=cam.world_to_camera, tracks_2d=tracks2d, track_visible=visible,
                             track_vertex_ids=np.asarray(landmark_ids))
    except BaseException:
        writer.abort()
        raise
    rep.progress("write", 1, message=f"result written: {path}")
    return path


def _anchor_progress(rep, i: int, n: int) -> None:
    """Stage-0 steps, then the anchor's surface extraction (its own stage: it can outlast the steps)."""
    rep.progress("anchor", i, n, f"anchor shape, step {i}/{n}")
    if i == n:
        rep.progress("surface", 0, message="anchor surface (marching cubes)")


def _mask_areas(clip) -> np.ndarray:
    return clip.mask_area if clip.mask_area is not None else np.ones(clip.count)


def _footage_size(clip) -> tuple[int, int]:
    return tuple(int(v) for v in clip.source_size)


def _pixels(clip, cmap: CropMap, frames: range) -> torch.Tensor:
    rgb, masks = clip.read_range(frames.start, frames.stop)
    return apply_crop(rgb, masks, cmap).pixel_values


def _anchor(backbone, clip, cmap, anchor_index, method, settings, progress):
    """Stage 0 on the anchor frame, then its surface: the mesh whose topology every frame keeps."""
    steps = settings.anchor_steps if method == "chain" else settings.baseline_anchor_steps
    latent = backbone.sample_anchor(_pixels(clip, cmap, range(anchor_index, anchor_index + 1)), settings, steps,
                                    progress)
    _check_finite(latent, "anchor sampling (stage 0)")
    mesh = surface.extract(backbone.sdf(latent), resolution=settings.grid_resolution,
                           coarse_resolution=settings.coarse_resolution, device=backbone.device,
                           chunk=settings.decode_chunk,
                           min_component_ratio=settings.min_component_ratio, face_budget=settings.face_budget)
    if len(mesh.faces) == 0:
        raise NumericalError("the anchor shape has no surface (stage 0 produced an empty SDF); "
                             "check the mask of the anchor frame")
    return mesh, latent


def _run_windows(backbone, clip, cmap, windows, anchor_index, anchor_latent, mesh, landmark_ids, settings, rep,
                 writer, method) -> Tracks:
    """Each window starts from the known frame (anchor, then the shared boundary frame) and streams out."""
    tracks = Tracks(clip.count, len(landmark_ids))
    known = _Known(anchor_latent, torch.as_tensor(mesh.vertices, dtype=torch.float32))
    confidence_map = _nearest_landmark(mesh.vertices, landmark_ids)
    for w in windows:
        def progress(done, total, w=w):
            rep.progress("windows", w.index + done / total, len(windows), f"window {w.index + 1}/{len(windows)}")

        try:
            out, verts = _retry_smaller(_window, backbone, clip, cmap, w, anchor_index, known, mesh, landmark_ids,
                                        method, settings=settings, rep=rep, progress=progress)
        except NumericalError as e:
            raise NumericalError(f"window {w.index + 1} (frames {clip.frame_numbers[w.start]}-"
                                 f"{clip.frame_numbers[w.stop - 1]}): {e}") from None
        first = 0 if w.index == 0 else 1  # the boundary frame was written by the previous window
        footage_xy = clip.to_footage_pixels(cmap.to_footage(out.image_xy.float().cpu().numpy()))
        conf = out.confidence.float().cpu().numpy()[first:]
        tracks.put(w.start + first, verts[first:, landmark_ids], footage_xy[first:],
                   out.image_confidence.float().cpu().numpy()[first:] * conf)
        writer.add_frames(vertices=verts[first:], confidence=conf[:, confidence_map],
                          frame_numbers=np.asarray(clip.frame_numbers[w.start + first:w.stop]))
        known = _Known(out.latents[-1], torch.as_tensor(verts[-1]))
        del out
        release_heap()
    return tracks


@dataclass
class _Known:
    """The known frame a window starts from: its latent and every vertex (the landmarks among them)."""

    latent: torch.Tensor
    vertices: torch.Tensor


def _window(backbone, clip, cmap, w, anchor_index, known, mesh, landmark_ids, method, settings, progress):
    """One window, all of it (images, chain or baseline, dense motion): the unit an OOM retry repeats."""
    context = backbone.encode_images(_pixels(clip, cmap, w.frames))
    known_index = anchor_index - w.start if w.index == 0 else 0
    seed = settings.stage1_seed + w.index
    if method == "chain":
        out = track_window(backbone, context, known_index, known.latent, known.vertices[landmark_ids],
                           settings=settings, progress=progress, seed=seed)
    else:
        out = baseline_window(backbone, context, known_index, known.latent, known.vertices,
                              torch.as_tensor(mesh.faces, dtype=torch.long), landmark_ids, settings=settings,
                              progress=progress, seed=seed)
    _check_finite(out.positions, "the chain")
    if out.vertices is not None:
        return out, out.vertices.float().cpu().numpy()
    pos, conf = out.positions.float().cpu().numpy(), out.confidence.float().cpu().numpy()
    return out, deform.propagate(mesh.vertices, mesh.faces, landmark_ids, pos, conf, **settings.to_dict())


def _retry_smaller(fn, *args, settings, rep, **kw):
    """Run ``fn(*args, settings=...)``; out of memory once, free what it held and retry with quartered
    chunks; out of memory again, say what to lower. Each retry starts outside the ``except`` block,
    so the failed attempt's frames (and their tensors) are gone before it runs."""
    device = args[0].device
    smaller = smaller_chunks(settings)
    for attempt in (settings, smaller):
        try:
            return fn(*args, settings=attempt, **kw)
        except Exception as e:  # anything but running out of memory is raised again at once
            if not out_of_memory(e):
                raise
        _free(device)
        if attempt is settings:
            rep.warning(f"out of memory on {device}: retrying with quartered chunks (decode_chunk "
                        f"{smaller.decode_chunk}, attention_chunk {smaller.attention_chunk}, vertex_chunk "
                        f"{smaller.vertex_chunk})")
    advice = "close other programs" if device.type == "cpu" else "use --precision bf16, or run with --device cpu"
    raise OutOfMemory(f"out of memory on {device} even with smaller chunks: lower candidate_resolution, "
                      f"grid_resolution, window_size or face_budget, or {advice}")


def smaller_chunks(settings):
    return settings.updated(decode_chunk=max(4096, settings.decode_chunk // 4),
                            attention_chunk=max(256, settings.attention_chunk // 4),
                            vertex_chunk=max(256, settings.vertex_chunk // 4))


def _free(device) -> None:
    release_heap()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _nearest_landmark(vertices, landmark_ids) -> np.ndarray:
    """Index into the landmarks of each vertex's nearest landmark (vertex confidence = its landmark's)."""
    X = torch.as_tensor(vertices, dtype=torch.float32)
    L = X[torch.as_tensor(landmark_ids)]
    return torch.cat([torch.cdist(c, L).argmin(1) for c in X.split(8192)]).numpy()


def _solve_camera(tracks: Tracks, clip, settings, rep):
    rep.progress("camera", 0, message="solving the camera")
    sol = camera.solve_long(tracks.points3d, tracks.points2d, tracks.weights, _footage_size(clip),
                            focal_px=settings.camera_focal_px, smoothness=settings.camera_smoothness,
                            progress=_span(rep, "camera", 0.0, 0.5, "solving the camera"))
    why = camera.plausible(sol)
    if why:
        sol = camera.default_camera(len(tracks.weights), _footage_size(clip))
        sol.warnings.append(f"camera not estimated ({why}); using a default front camera")
    for w in sol.warnings:
        rep.warning(w)
    err = _median(sol.reprojection_error_px)
    rep.progress("camera", 0.5, message="camera: no valid matches" if err is None else f"camera: median error {err:.2f} px")
    return sol


def _span(rep, stage: str, lo: float, hi: float, message: str):
    """A ``progress(done, total)`` callback filling ``lo..hi`` of ``stage`` (it checks for a cancel)."""
    return lambda done, total: rep.progress(stage, lo + (hi - lo) * done / total, message=f"{message}: {done}/{total}")


def _median(x) -> float | None:
    x = np.asarray(x, np.float64)
    return float(np.nanmedian(x)) if np.isfinite(x).any() else None


def _move_camera(cam, tracks: Tracks, writer: ResultWriter):
    """"Camera moves": the object's rigid motion (landmarks vs the first frame) goes into the camera."""
    points = tracks.points3d
    motion = camera.object_motion(points[0], points, tracks.weights)
    cam, _ = camera.present(cam, "camera_moves", motion, points[:, :0])
    writer.transform("vertices", lambda a, b, v: camera.remove_motion(motion.matrices[a:b], v))
    return cam


def _check_finite(x, stage: str) -> None:
    if not torch.isfinite(torch.as_tensor(x)).all():
        raise NumericalError(f"NaN or Inf in the output of {stage}; try --precision fp32 or another device")


def _metadata(job, settings, backbone, clip, anchor_index, seconds, cam) -> dict:
    import blender_stchain

    return {
        "method": job.method,
        "preset": job.preset,
        "settings": settings.to_dict(),
        "smoke_test": backbone.is_random,
        "weights": backbone.identities,
        "device": str(backbone.device),
        "precision": backbone.precision,
        "footage": {"path": str(clip.path), "kind": clip.kind, "fps": None if clip.fps is None else str(clip.fps),
                    "size": list(_footage_size(clip)), "frames": [clip.frame_numbers[0], clip.frame_numbers[-1]]},
        "anchor_frame": int(clip.frame_numbers[anchor_index]),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "camera": {"median_error_px": _median(cam.reprojection_error_px), "warnings": list(cam.warnings)},
        "versions": {"blender_stchain": blender_stchain.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }
