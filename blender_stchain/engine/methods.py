"""The two generation methods as records: the one place that knows what differs between them.

A method names the backbone parts it loads, its progress plan (relative stage weights for the bar
before anything is measured), its stage-0 step count, its window function and that window's work as
the time estimate counts it. The pipeline only looks a method up;
the names themselves are the job vocabulary of ``contracts.job.METHODS`` (torch-free), and a test
checks both list the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..contracts.progress import Item
from ..contracts.settings import Settings
from .backbone.facade import CORE_PARTS
from .chain.baseline import baseline_window
from .chain.window import WindowTracks, track_window
from .weights.preflight import PARTS


@dataclass
class Known:
    """The known frame a window starts from: its latent and every vertex (the landmarks among them)."""

    latent: torch.Tensor  # (N, C)
    vertices: torch.Tensor  # (Nv, 3)


@dataclass(frozen=True)
class AnchorShape:
    """The anchor's fixed topology as the window functions need it."""

    faces: torch.Tensor  # (F, 3) long
    landmark_ids: torch.Tensor  # (L,) long


WindowFn = Callable[..., WindowTracks]
WorkFn = Callable[..., list]  # (settings, frames, known_index, step_flops(batch)) -> [Item]
AUTOENCODER_SHARE = 0.25  # stage II vs one unguided denoiser step over the window (a narrower model; measured)


@dataclass(frozen=True)
class Method:
    name: str
    parts: tuple[str, ...]  # backbone parts to load
    plan: dict  # stage -> relative weight of its progress (until the time estimate has measured something)
    anchor_steps: Callable[[Settings], int]  # stage-0 steps
    window: WindowFn  # (backbone, context, known_index, Known, AnchorShape, settings, progress, seed)
    window_work: WorkFn  # a window's items after its images, one per progress report the window makes


def _chain_window(backbone, context, known_index, known: Known, shape: AnchorShape, settings, progress, seed):
    return track_window(backbone, context, known_index, known.latent, known.vertices[shape.landmark_ids],
                        settings=settings, progress=progress, seed=seed)


def _baseline_window(backbone, context, known_index, known: Known, shape: AnchorShape, settings, progress, seed):
    return baseline_window(backbone, context, known_index, known.latent, known.vertices, shape.faces,
                           shape.landmark_ids, settings=settings, progress=progress, seed=seed)


def _chain_work(settings, frames: int, known_index: int, step_flops) -> list[Item]:
    """K truncated stage-I steps, then each frame (the known one costs nothing), as ``track_window``
    reports them: its frames are batched and end together, so they are one kind (measured as one span)."""
    steps = [Item("denoiser", step_flops(1 if settings.stage1_guidance is None else 2))] * settings.chain_steps
    return steps + [Item("frame", 0.0 if f == known_index else 1.0) for f in range(frames)]


def _baseline_work(settings, frames: int, known_index: int, step_flops) -> list[Item]:
    """The guided stage-I schedule, then stage II, as ``baseline_window`` reports them."""
    return [Item("denoiser", step_flops(2))] * settings.baseline_steps + [
        Item("stage2", AUTOENCODER_SHARE * step_flops(1))]


def _plan(window: float) -> dict:
    """Stages in run order with their relative cost (``windows``: per window; the pipeline scales it).
    Only the progress bar's first moments use it (loading, the anchor's first step): from then on the
    time estimate predicts each stage in seconds from its counted work (``engine.estimate``)."""
    return {"load": 1.0, "anchor": 4.0, "surface": 4.0, "windows": window, "camera": 1.0, "write": 0.5}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("chain", CORE_PARTS, _plan(8.0), lambda s: s.anchor_steps, _chain_window, _chain_work),
        Method("actionmesh", PARTS["actionmesh"], _plan(64.0),
               lambda s: s.baseline_anchor_steps, _baseline_window, _baseline_work),
    )
}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
