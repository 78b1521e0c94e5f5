"""The pipeline's time estimate: its work counted before it starts, unit times calibrated right after
the weights load and then measured (``contracts.progress`` holds the maths, this module the knowledge).

Counts: stage-0 DiT and stage-I denoiser FLOPs per step (from the models' sizes, ``step_flops``), SDF
queries of a surface at a grid setting (``surface_queries``: the dense coarse level plus a band around
the surface at each finer level), frames, windows (each method lays out its windows' items,
``Method.window_work``), landmarks. Calibration, on the run's device: one decoder kv cache and one
chunk of SDF queries on a dummy latent, one image through DINOv2, and a surface extraction of a sphere
at the candidate grid (its host work and query count); footage frames are read on the host thread
beside the model, so reading is not priced. The DiT's FLOPs are priced by the anchor's own steps (so
the first ETA arrives at its second step), the denoiser's by the DiT's until its steps are measured;
the anchor surface's real query count corrects the size of the per-frame candidate surfaces; every
kind is measured again as its items finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import torch

from ..contracts.progress import CostModel, Item
from .device import geometry_device, synchronize
from .geometry import surface

CONTEXT_TOKENS = 257  # DINOv2 tokens per 224 px image (CLS + 16 x 16 patches)
# the camera stage is host work: 0.5 s + 6e-5 s per landmark x frame on the 2-core dev CPU (bench/eta.py),
# a small share of a run with real weights; measured nowhere else, as it comes once at the end
CAMERA_S = (0.5, 6e-5)
PROBE_POINTS = 4096  # SDF queries timed by the calibration (per-point cost is linear in the count)
SPHERE_RADIUS = 0.6  # a compact object like the footage's: its surface sets the query count's prior


def step_flops(dims, tokens: int, frames: int = 1, batch: int = 1, inflated=(), context: int = CONTEXT_TOKENS) -> float:
    """FLOPs of one DiT / denoiser call: ``batch`` x ``frames`` sequences of ``tokens`` latent tokens plus
    the time token; layers in ``inflated`` attend over all frames jointly (stage I)."""
    w, f, s = dims.width, dims.ff_inner, tokens + 1
    macs = 0.0
    for layer in range(dims.layers):
        joint = frames if layer in inflated else 1
        macs += frames * s * (6 * w * w + 2 * w * f) + frames * context * 2 * dims.cross_dim * w
        macs += 2 * frames * s * (joint * s) * w + 2 * frames * s * context * w  # self, cross attention
        if dims.has_skip(layer):
            macs += frames * s * 2 * w * w
    return 2.0 * batch * macs


def _denoiser_step(den, tokens: int, frames: int, batch: int) -> float:
    return step_flops(den.dims, tokens, frames, batch, den.inflated)


def _levels(resolution: int, coarse: int) -> list[int]:
    return surface._levels(resolution, coarse)


PRIOR_BAND = 10.0  # ``band`` of a compact object (a sphere of radius 0.6), before any surface is measured


def surface_queries(resolution: int, coarse: int, band: float) -> float:
    """SDF queries of one surface: the dense first level plus ``band`` x resolution^2 per finer level
    (the refined cells follow the surface area; ``band`` is ~10 for a sphere of radius 0.6)."""
    levels = _levels(resolution, coarse)
    return (levels[0] + 1) ** 3 + band * sum(r * r for r in levels[1:])


def _band(queries: float, resolution: int, coarse: int) -> float:
    levels = _levels(resolution, coarse)
    return max(0.0, queries - (levels[0] + 1) ** 3) / max(1, sum(r * r for r in levels[1:]))


@dataclass
class Calibration:
    kv_s: float  # one decoder kv cache
    query_s: float  # one SDF query (decoder)
    host_query_s: float  # surface extraction's own work per query (sampling, marching cubes)
    band: float  # refined queries per resolution^2 of the prior shape (a sphere)
    vertices_per_band: float  # candidate surface vertices per unit of ``band``
    image_s: float  # one image through DINOv2
    seconds: float  # the calibration itself


def calibrate(bb, settings) -> Calibration:
    """Time the small things on the run's device with dummy inputs (no RNG drawn, nothing kept)."""
    t0 = time.perf_counter()
    dev = bb.device
    with torch.no_grad(), bb.autocast():
        t = time.perf_counter()
        dec = bb.decoder(torch.zeros(bb.num_tokens, bb.latent_channels))
        synchronize(dev)
        kv = time.perf_counter() - t
        points = torch.linspace(-0.9, 0.9, PROBE_POINTS)[:, None].repeat(1, 3)
        dec.sdf(points[:256])  # first call: kernel set-up
        t = time.perf_counter()
        dec.sdf(points)
        synchronize(dev)
        query = (time.perf_counter() - t) / PROBE_POINTS
    t = time.perf_counter()
    # stage 0's DINOv2 copy (the same model as stage I's): stage I's loads only after stage 0 is released
    bb.encode_images(torch.zeros(1, 3, bb.image_px, bb.image_px), "image_encoder_dinov2")
    synchronize(dev)
    image = time.perf_counter() - t
    res, coarse = settings.candidate_resolution, settings.candidate_coarse_resolution
    queries = [0]

    def sphere(p):
        queries[0] += len(p)
        return SPHERE_RADIUS - p.norm(dim=-1)

    t = time.perf_counter()
    mesh = surface.extract(sphere, resolution=res, coarse_resolution=coarse, device=geometry_device(dev))
    host = (time.perf_counter() - t) / max(1, queries[0])
    band = _band(queries[0], res, coarse)
    return Calibration(kv, query, host, band, len(mesh.vertices) / max(band, 1e-9), image,
                       time.perf_counter() - t0)


class Estimate:
    """One run's cost model and what feeds it: the windows' item layout the pipeline reports in
    (``window_start``, ``window_items``) and the anchor surface's meter."""

    def __init__(self, method, settings, windows, anchor_offset: int, bb, cal: Calibration, frames: int):
        """``method``: the ``engine.methods.Method`` record (its anchor steps and its windows' work)."""
        self.settings, self.cal = settings, cal
        den, dit, n = bb.models.spec("denoiser"), bb.models.spec("transformer"), bb.num_tokens  # no load
        per_window, self.window_start = [], []
        for w in windows:  # a window's images, then one item per report of the method's window
            self.window_start.append(sum(len(x) for x in per_window))
            flops = partial(_denoiser_step, den, n, len(w))
            per_window.append([Item("image", len(w))] + method.window_work(
                settings, len(w), anchor_offset if w.index == 0 else 0, flops))
        anchor_items = [Item("dit", step_flops(dit.dims, n, batch=2))] * method.anchor_steps(settings)
        res, coarse = settings.grid_resolution, settings.coarse_resolution
        self.costs = CostModel(
            {"load": [], "anchor": anchor_items,
             "surface": [Item("anchor_surface", surface_queries(res, coarse, cal.band))],
             "windows": [i for w in per_window for i in w],
             "camera": [Item("camera")], "write": [Item("write")]},
            calibrated={"image": cal.image_s, "anchor_surface": cal.query_s + cal.host_query_s,
                        "frame": self._frame_seconds(cal.band, cal.query_s, cal.host_query_s),
                        "camera": CAMERA_S[0] + CAMERA_S[1] * frames * settings.landmarks,
                        "write": 0.0},
            like={"denoiser": "dit", "stage2": "denoiser"})
        self._meter = [0]  # the anchor surface's SDF queries

    @property
    def window_items(self) -> int:
        return len(self.costs.stages["windows"])

    def _frame_seconds(self, band: float, query_s: float, host_s: float) -> float:
        """One chained frame: its decoder kv cache, its candidate surface, the attention of its vertices."""
        s, cal = self.settings, self.cal
        q = surface_queries(s.candidate_resolution, s.candidate_coarse_resolution, band)
        return cal.kv_s + q * (query_s + host_s) + cal.vertices_per_band * band * query_s

    def metered(self, sdf):
        """``sdf`` counting its queries (the anchor surface's real size)."""
        self._meter = [0]

        def counted(points):
            self._meter[0] += len(points)
            return sdf(points)

        return counted

    def anchor_surface_done(self) -> None:
        """The anchor surface's real query count sets the candidate surfaces' band (the object's area);
        their per-query seconds stay the calibration's, timed on chunks of a candidate's size (the
        anchor's chunks are far larger, and per-call overheads dominate small models)."""
        queries = self._meter[0]
        if queries:
            band = _band(queries, self.settings.grid_resolution, self.settings.coarse_resolution)
            self.costs.calibrated["frame"] = self._frame_seconds(band, self.cal.query_s, self.cal.host_query_s)

    def summary(self) -> dict:
        """The result metadata's ``time_estimate``: the calibration's seconds and each kind's seconds per
        unit at the end (measured where the run measured it)."""
        kinds = sorted({i.kind for items in self.costs.stages.values() for i in items})
        units = {k: self.costs.unit(k) for k in kinds}
        return {"calibration_s": round(self.cal.seconds, 3), "measured": sorted(self.costs.measured),
                "seconds_per_unit": {k: float(f"{u:.4g}") for k, u in units.items() if u is not None},
                "prior": {k: float(f"{u:.4g}") for k, u in self.costs.calibrated.items()}}


def start(method, settings, windows, anchor_offset: int, bb, frames: int) -> Estimate:
    """Calibrate and build the run's estimate (call once the weights are loaded)."""
    return Estimate(method, settings, windows, anchor_offset, bb, calibrate(bb, settings), frames)
