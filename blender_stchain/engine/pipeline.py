"""``run(job, on_event, cancel) -> Path``: footage in, ``result.safetensors`` out (docs/architecture.md 1).

Data flows one way: footage -> shared crop -> anchor (stage 0 + surface) -> windows (chain or the
ActionMesh baseline) -> dense motion -> camera -> result file. Each finished window streams to the
result's spool, so memory stays flat in clip length; the file appears atomically at the end, and a
cancel or failure leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from ..contracts.errors import NumericalError, OutOfMemory, onednn_failed, out_of_memory
from ..contracts.progress import Reporter
from ..contracts.job import JobSpec
from ..contracts.result import ResultWriter
from ..contracts.settings import Settings
from . import camera, deform, estimate
from .backbone import load_backbone
from .camera import stage as camera_stage
from .chain.windows import choose_anchor, plan_windows
from .device import empty_cache, fallback_events, geometry_device
from .footage import open_footage
from .footage.preprocess import CropMap, apply_crop, clip_crop_map
from .geometry import surface
from .geometry.mesh_ops import Mesh
from .memory import pin_heap, release_heap
from .methods import AnchorShape, Known, Method, method
from .weights.preflight import require

SMOKE = "SMOKE TEST: random weights (make-random), not a reconstruction; get the real weights with " \
        "`python -m blender_stchain weights download`"
NO_MASK = "no mask: the whole frame goes to the model, background included; mark the object (Segment object, " \
          "--segment X,Y) or give masks for a real reconstruction"


T = TypeVar("T")

@dataclass
class Anchor:
    """The anchor frame's results every window reuses, each computed once per run."""

    index: int  # clip index of the anchor frame
    mesh: Mesh
    latent: torch.Tensor
    landmark_ids: np.ndarray
    skinning_job: Future  # -> deform.Skinning: geodesics and skin weights, so dense motion per window is cheap
    shape: AnchorShape
    confidence_map: np.ndarray  # each vertex's nearest landmark (vertex confidence = its landmark's)
    prepare: Callable[[], Future]  # submits the skinning job (again)

    def wait_skinning(self) -> deform.Skinning:
        """Wait for the host job. When it ran out of memory, a fresh job is submitted before the error goes
        on, so the window's retry (``_retry_smaller``) waits for new geodesics, not the stored failure."""
        try:
            return self.skinning_job.result()
        except Exception as e:
            if out_of_memory(e):
                self.skinning_job = self.prepare()
            raise


@dataclass
class Run:
    """One run's context: what every stage reads, so stage functions take it and little else."""

    job: JobSpec
    method: Method
    settings: Settings
    rep: Reporter
    clip: object  # engine.footage.Footage
    backbone: object = None  # engine.backbone.Backbone
    cmap: CropMap | None = None
    writer: ResultWriter | None = None
    load: Callable = load_backbone  # a batch worker passes its cache (same signature)
    shared: bool = False  # the backbone outlives this run (a batch worker's): stage 0 stays for the next clip
    host: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "stchain-host"))
    seconds: dict = field(default_factory=dict)
    model_seconds: dict = field(default_factory=dict)  # of ``seconds``: time inside model calls
    reading: threading.Lock = field(default_factory=threading.Lock)  # one footage reader, two threads
    prefetched: dict = field(default_factory=dict)  # window index -> Future of its model images
    estimate: estimate.Estimate | None = None  # the time estimate's counts and measurements

    def pixels(self, frames: range) -> torch.Tensor:
        with self.reading:
            rgb, masks = self.clip.read_range(frames.start, frames.stop)
        return apply_crop(rgb, masks, self.cmap).pixel_values

    def window_pixels(self, windows, i: int) -> torch.Tensor:
        """Window ``i``'s model images. They are decoded and cropped on the host thread while the model
        works on the anchor or the previous window; asking for window i starts window i+1's read."""
        job = self.prefetched.pop(i, None) or self.host.submit(self.pixels, windows[i].frames)
        if i + 1 < len(windows):
            self.prefetched[i + 1] = self.host.submit(self.pixels, windows[i + 1].frames)
        return job.result()

    @property
    def footage_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.clip.source_size)


def run(job: JobSpec, on_event=None, cancel=None, backbones=None) -> Path:
    """``backbones``: a loader with ``load_backbone``'s signature; a long-lived batch worker passes its
    cache so the weights load once for many clips (same models, same result)."""
    pin_heap()
    m = method(job.method)
    rep = Reporter(on_event, cancel, m.plan)
    t0 = time.perf_counter()
    require(job.weights, job.method, job.allow_random_weights)  # weights before a frame is decoded
    rep.progress("load", 0, message="reading footage")
    with warnings.catch_warnings():  # footage warnings travel as events below
        warnings.simplefilter("ignore")
        clip = open_footage(job.footage, masks=job.masks, frames=job.frames)
    r = Run(job, m, job.resolved_settings(), rep, clip, load=backbones or load_backbone, shared=backbones is not None)
    onednn = torch.backends.mkldnn.enabled
    try:
        with fallback_events(rep.warning):  # an op MPS lacks ran on the CPU: a warning event, not a log line
            return _run_clip(r, t0)
    finally:
        torch.backends.mkldnn.enabled = onednn
        r.host.shutdown(wait=False, cancel_futures=True)  # a cancel does not wait for the geodesics
        with r.reading:  # ... but a frame read under way finishes before the reader closes
            clip.close()


def _run_clip(r: Run, t0: float) -> Path:
    for w in r.clip.warnings:
        r.rep.warning(w)
    if r.clip.mask_kind == "none":  # never the whole frame silently (the CLI and Blender stop before)
        r.rep.warning(NO_MASK)
    job = r.job
    r.backbone = r.load(job.weights, job.device, job.precision, r.method.parts, job.allow_random_weights)
    if r.backbone.is_random:
        r.rep.warning(SMOKE)
    r.settings, fitted = r.backbone.plan_memory(r.settings, r.method.name)  # offload, chunks from free memory
    for note in (*r.backbone.rt.notes, *fitted):  # the device's problems and the fallbacks taken
        r.rep.warning(note)
    r.cmap = clip_crop_map(r.clip)
    windows = plan_windows(r.clip.count, r.settings.window_size)
    r.rep.resize("windows", r.method.plan["windows"] * len(windows))  # the plan's cost is per window
    anchor_index = choose_anchor(_mask_areas(r.clip), windows[0], r.settings.anchor_frame)
    r.estimate = estimate.start(r.method, r.settings, windows, anchor_index - windows[0].start, r.backbone,
                                r.clip.count)
    r.rep.use_costs(r.estimate.costs)
    r.seconds["load"] = time.perf_counter() - t0
    r.rep.progress("load", 1, message="weights loaded")
    r.writer = ResultWriter(job.out)
    try:
        with _timed(r, "anchor"):
            anchor = _make_anchor(r, anchor_index, windows)
        with _timed(r, "windows"):
            tracks = _run_windows(r, windows, anchor)
        with _timed(r, "camera"):
            cam, tracks2d, visible = _camera_stage(r, tracks, anchor)
        r.rep.progress("write", 0, message="writing the result")
        path = r.writer.finish(_metadata(r, anchor.index, cam), faces=anchor.mesh.faces, K=cam.K,
                               image_size=np.array(r.footage_size), world_to_camera=cam.world_to_camera,
                               tracks_2d=tracks2d, track_visible=visible,
                               track_vertex_ids=np.asarray(anchor.landmark_ids))
    except BaseException:
        r.writer.abort()
        raise
    r.rep.progress("write", 1, message=f"result written: {path}")
    return path


@contextmanager
def _timed(r: Run, stage: str):
    """Adds the block's wall seconds to ``seconds[stage]`` and its model-call seconds to
    ``model_seconds[stage]`` (the rest is host work)."""
    t, m = time.perf_counter(), r.backbone.clock.seconds
    try:
        yield
    finally:
        r.seconds[stage] = r.seconds.get(stage, 0.0) + time.perf_counter() - t
        r.model_seconds[stage] = r.model_seconds.get(stage, 0.0) + r.backbone.clock.seconds - m


def _anchor_progress(rep, i: int, n: int) -> None:
    """Stage-0 steps, then the anchor's surface extraction (its own stage: it can outlast the steps)."""
    rep.progress("anchor", i, n, f"anchor shape, step {i}/{n}")
    if i == n:
        rep.progress("surface", 0, message="anchor surface (marching cubes)")


def _mask_areas(clip) -> np.ndarray:
    return clip.mask_area if clip.mask_area is not None else np.ones(clip.count)


def _make_anchor(r: Run, anchor_index: int, windows) -> Anchor:
    """Stage 0, then its surface, then everything the windows reuse. The stage-0 models are dropped
    before the surface is decoded: the decoder's queries are the run's largest activations, so the
    peak holds the VAE and the stage-I models only. The first window's frames are read beside it."""
    progress = lambda i, n: _anchor_progress(r.rep, i, n)
    pixels = r.pixels(range(anchor_index, anchor_index + 1))
    r.prefetched[0] = r.host.submit(r.pixels, windows[0].frames)
    with r.backbone.autocast():
        latent = _retry_smaller(r, lambda settings: _anchor_latent(r, anchor_index, pixels, settings, progress))
        if not r.shared:
            r.backbone.release()
        mesh = _retry_smaller(r, lambda settings: _anchor_surface(r, latent, settings))
    r.estimate.anchor_surface_done()
    r.rep.progress("surface", 1, message=f"anchor mesh: {len(mesh.vertices)} vertices")
    ids = deform.farthest_point_landmarks(mesh.vertices, r.settings.landmarks)
    # the geodesics (host work, seconds) run beside the first window's model work, which does not need them
    prepare = functools.partial(r.host.submit, deform.Skinning.prepare, mesh.vertices, mesh.faces, ids,
                                device=geometry_device(r.backbone.device), **r.settings.to_dict())
    shape = AnchorShape(torch.as_tensor(mesh.faces, dtype=torch.long), torch.as_tensor(ids, dtype=torch.long))
    return Anchor(anchor_index, mesh, latent, ids, prepare(), shape, _nearest_landmark(mesh.vertices, ids), prepare)


def _anchor_latent(r: Run, anchor_index: int, pixels, settings, progress):
    """Stage 0 on the anchor frame: its clean latent."""
    latent = r.backbone.sample_anchor(pixels, settings, r.method.anchor_steps(settings), progress)
    _check_finite(latent, "anchor sampling (stage 0)")
    return latent


def _anchor_surface(r: Run, latent, settings):
    """The anchor latent's surface: the mesh whose topology every frame keeps."""
    bb = r.backbone
    mesh = surface.extract(r.estimate.metered(bb.sdf(latent)), resolution=settings.grid_resolution,
                           coarse_resolution=settings.coarse_resolution, device=geometry_device(bb.device),
                           chunk=settings.decode_chunk,
                           min_component_ratio=settings.min_component_ratio, face_budget=settings.face_budget)
    if len(mesh.faces) == 0:
        raise NumericalError("the anchor shape has no surface (stage 0 produced an empty SDF); "
                             "check the mask of the anchor frame")
    return mesh


def _run_windows(r: Run, windows, anchor: Anchor) -> camera_stage.Matches:
    """Each window starts from the known frame (anchor, then the shared boundary frame) and streams out.
    Only the boundary frame's vertices are skinned before the next window starts: the rest of a window
    is skinned and written on the host thread beside the next window's model work (one window in
    flight, so memory stays flat)."""
    clip = r.clip
    tracks = camera_stage.Matches(clip.count, len(anchor.landmark_ids))
    known = Known(anchor.latent, torch.as_tensor(anchor.mesh.vertices, dtype=torch.float32))
    starts, items = r.estimate.window_start, r.estimate.window_items  # progress counts the estimate's items
    storing = None
    try:
        for w in windows:
            def progress(done, total, w=w):  # a window's items: its images, the method's steps and frames
                r.rep.progress("windows", starts[w.index] + 1 + done, items, f"window {w.index + 1}/{len(windows)}")

            pixels = r.window_pixels(windows, w.index)
            try:
                with r.backbone.autocast():  # one scope per window: no autocast state outlives it
                    out, frames = _retry_smaller(
                        r, lambda settings: _window(r, w, pixels, known, anchor, settings, progress))
            except NumericalError as e:
                raise NumericalError(f"window {w.index + 1} (frames {clip.frame_numbers[w.start]}-"
                                     f"{clip.frame_numbers[w.stop - 1]}): {e}") from None
            last = frames(len(w.frames) - 1, None)  # the next window's known frame
            _settle(r, storing)  # the previous window is on disk before this one goes
            work = functools.partial(_store, r, w, out, frames, last, tracks, anchor)
            storing = _Storing(work, r.host.submit(work))
            known = Known(out.latents[-1], torch.as_tensor(last[0]))
            del out, frames
            release_heap()
        _settle(r, storing)
    except BaseException:
        _abandon(storing)
        raise
    return tracks


@dataclass
class _Storing:
    """A window's frames going to the result spool on the host thread."""

    work: Callable[[], None]
    job: Future


def _settle(r: Run, storing: _Storing | None) -> None:
    """Waits for a window's storing. Out of memory there (skinning on the device), it runs once more here,
    after what the failed try held is freed; it writes nothing before its skinning is done."""
    if storing is None:
        return
    try:
        storing.job.result()
    except Exception as e:
        if not out_of_memory(e):
            raise
        _free(r.backbone.device)
        r.rep.warning(f"out of memory on {r.backbone.device} skinning a window beside the model: skinning it again "
                      "after the model's work")
        storing.work()


def _abandon(storing: _Storing | None) -> None:
    """A failed or cancelled run waits for the storing under way (a fraction of a second), so the
    writer's files are not removed under it; its own failure no longer matters."""
    if storing is not None and not storing.job.cancel():
        futures_wait([storing.job])


def _store(r: Run, w, out, frames, last: np.ndarray, tracks: camera_stage.Matches, anchor: Anchor) -> None:
    """Window ``w``'s vertices to the result spool and its landmarks to the camera's matches."""
    first = 0 if w.index == 0 else 1  # the boundary frame was written by the previous window
    verts = np.concatenate([frames(first, len(w.frames) - 1), last])  # later windows have >= 2 frames
    conf = out.confidence.float().cpu().numpy()[first:]
    tracks.put(w.start + first, verts[:, anchor.landmark_ids],
               *camera_stage.window_matches(out, r.clip, r.cmap, first, conf))
    r.writer.add_frames(vertices=verts, confidence=conf[:, anchor.confidence_map],
                        frame_numbers=np.asarray(r.clip.frame_numbers[w.start + first:w.stop]))


def _window(r: Run, w, pixels, known: Known, anchor: Anchor, settings, progress):
    """One window, all of it (images, chain or baseline, the landmarks' motion): the unit an OOM retry
    repeats. Returns its output and ``frames(start, stop)``: the vertices of those frames."""
    bb = r.backbone
    context = bb.encode_images(pixels)
    known_index = anchor.index - w.start if w.index == 0 else 0
    out = r.method.window(bb, context, known_index, known, anchor.shape, settings, progress,
                          settings.stage1_seed + w.index)
    _check_finite(out.positions, "the chain")
    if out.vertices is not None:
        out = _hand_over(out)
        return out, functools.partial(_predicted, out.vertices)
    motion = anchor.wait_skinning().motion(out.positions.float(), out.confidence.float())
    return _hand_over(out), motion.vertices


HANDED_OVER = ("confidence", "image_xy", "image_confidence", "image_sigma", "vertices")


def _hand_over(out):
    """The window's one hand-over: what its storing reads on the host thread, moved to the host here,
    on the thread that runs the model (MPS must not be used from two threads). The latents stay on
    the device: the next window starts from them."""
    return dataclasses.replace(out, **{name: None if getattr(out, name) is None else getattr(out, name).cpu()
                                       for name in HANDED_OVER})


def _predicted(vertices: torch.Tensor, start: int, stop: int | None) -> np.ndarray:
    return vertices[start:stop].float().cpu().numpy()


def _retry_smaller(r: Run, attempt: Callable[[Settings], T]) -> T:
    """``attempt(settings)`` with the run's settings; out of memory once, free what it held and retry with
    quartered chunks; out of memory again, say what to lower. Each retry starts outside the ``except`` block,
    so the failed attempt's frames (and their tensors) are gone before it runs."""
    device, settings, rep = r.backbone.device, r.settings, r.rep
    smaller = smaller_chunks(settings)
    for chunks in (settings, smaller):
        try:
            out = attempt(chunks)
            r.settings = chunks  # the chunks that fit stay for the rest of the run (no window fails first)
            return out
        except Exception as e:  # anything but running out of memory is raised again at once
            if not out_of_memory(e):
                raise
            without_onednn = onednn_failed(e)
        _free(device)
        if without_onednn:  # for the rest of the run (``run`` restores the flag)
            torch.backends.mkldnn.enabled = False
        if chunks is settings:
            rep.warning(f"out of memory on {device}: retrying with quartered chunks (decode_chunk "
                        f"{smaller.decode_chunk}, attention_chunk {smaller.attention_chunk}, vertex_chunk "
                        f"{smaller.vertex_chunk}){' and without oneDNN kernels' if without_onednn else ''}, "
                        "kept for the rest of the run")
    advice = "close other programs" if device.type == "cpu" else "use --precision bf16, or run with --device cpu"
    raise OutOfMemory(f"out of memory on {device} even with smaller chunks: lower candidate_resolution, "
                      f"grid_resolution, window_size or face_budget, or {advice}")


def smaller_chunks(settings):
    return settings.updated(decode_chunk=max(4096, settings.decode_chunk // 4),
                            attention_chunk=max(256, settings.attention_chunk // 4),
                            vertex_chunk=max(256, settings.vertex_chunk // 4))


def _free(device) -> None:
    release_heap()
    empty_cache(device)


def _nearest_landmark(vertices, landmark_ids) -> np.ndarray:
    """Index into the landmarks of each vertex's nearest landmark (vertex confidence = its landmark's)."""
    X = torch.as_tensor(vertices, dtype=torch.float32)
    L = X[torch.as_tensor(landmark_ids)]
    return torch.cat([torch.cdist(c, L).argmin(1) for c in X.split(8192)]).numpy()


def _camera_stage(r: Run, tracks: camera_stage.Matches, anchor: Anchor):
    """The camera, moved into the object's motion when asked, and the landmarks' 2D tracks."""
    cam = camera_stage.run(tracks, r.clip, r.writer.spooled("vertices"), anchor.mesh.faces, anchor.landmark_ids,
                           r.settings, r.rep)
    if r.settings.camera_mode == "camera_moves":
        cam = _move_camera(cam, tracks, r.writer)
    tracks2d, visible = camera.tracks_2d(r.writer.spooled("vertices"), anchor.mesh.faces, anchor.landmark_ids,
                                         cam.K, cam.world_to_camera, r.footage_size,
                                         progress=_span(r.rep, "camera", 0.5, 1.0, "projecting the tracks"),
                                         pool=r.host)
    return cam, tracks2d, visible


def _span(rep, stage: str, lo: float, hi: float, message: str):
    """A ``progress(done, total)`` callback filling ``lo..hi`` of ``stage`` (it checks for a cancel)."""
    return lambda done, total: rep.progress(stage, lo + (hi - lo) * done / total, message=f"{message}: {done}/{total}")


def _move_camera(cam, tracks: camera_stage.Matches, writer: ResultWriter):
    """"Camera moves": the object's rigid motion (landmarks vs the first frame) goes into the camera."""
    points = tracks.points3d
    motion = camera.object_motion(points[0], points, tracks.weights)
    cam, _ = camera.present(cam, "camera_moves", motion, points[:, :0])
    writer.transform("vertices", lambda a, b, v: camera.remove_motion(motion.matrices[a:b], v))
    return cam


def _check_finite(x, stage: str) -> None:
    if not torch.isfinite(torch.as_tensor(x)).all():
        raise NumericalError(f"NaN or Inf in the output of {stage}; try --precision fp32 or another device")


def _metadata(r: Run, anchor_index: int, cam) -> dict:
    import blender_stchain

    clip, bb = r.clip, r.backbone
    return {
        "method": r.job.method,
        "preset": r.job.preset,
        "settings": r.settings.to_dict(),
        "smoke_test": bb.is_random,
        "weights": bb.identities,
        "device": str(bb.device),
        "precision": bb.precision,
        "footage": {"path": str(clip.path), "kind": clip.kind, "fps": None if clip.fps is None else str(clip.fps),
                    "size": list(r.footage_size), "frames": [clip.frame_numbers[0], clip.frame_numbers[-1]]},
        "anchor_frame": int(clip.frame_numbers[anchor_index]),
        "seconds": {k: round(v, 3) for k, v in r.seconds.items()},
        "model_seconds": {k: round(v, 3) for k, v in r.model_seconds.items()},
        "time_estimate": r.estimate.summary(),
        "camera": camera_stage.metadata(cam),
        "versions": {"blender_stchain": blender_stchain.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }
