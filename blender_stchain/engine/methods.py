"""The two generation methods as records: the one place that knows what differs between them.

A method names the backbone parts it loads, its progress plan (relative stage weights for the time
estimate), its stage-0 step count and its window function. The pipeline only looks a method up;
the names themselves are the job vocabulary of ``contracts.job.METHODS`` (torch-free), and a test
checks both list the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..contracts.settings import Settings
from .backbone.facade import CORE_PARTS
from .weights.preflight import PARTS
from .chain.baseline import baseline_window
from .chain.window import WindowTracks, track_window


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


@dataclass(frozen=True)
class Method:
    name: str
    parts: tuple[str, ...]  # backbone parts to load
    plan: dict  # stage -> relative weight of its progress
    anchor_steps: Callable[[Settings], int]  # stage-0 steps
    window: WindowFn  # (backbone, context, known_index, Known, AnchorShape, settings, progress, seed)


def _chain_window(backbone, context, known_index, known: Known, shape: AnchorShape, settings, progress, seed):
    return track_window(backbone, context, known_index, known.latent, known.vertices[shape.landmark_ids],
                        settings=settings, progress=progress, seed=seed)


def _baseline_window(backbone, context, known_index, known: Known, shape: AnchorShape, settings, progress, seed):
    return baseline_window(backbone, context, known_index, known.latent, known.vertices, shape.faces,
                           shape.landmark_ids, settings=settings, progress=progress, seed=seed)


def _plan(window: float) -> dict:
    """Stages in run order with their relative cost (``windows``: per window; the pipeline scales it).
    From the demo (small, fast, CPU): anchor ~160 s, surface ~190 s, one chain window ~320 s, camera
    ~30 s; an ActionMesh window ~8x a chain window (bench). Only the ratios matter: the pace itself is
    measured as the job runs (``contracts.events.Reporter``)."""
    return {"load": 1.0, "anchor": 4.0, "surface": 4.0, "windows": window, "camera": 1.0, "write": 0.5}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("chain", CORE_PARTS, _plan(8.0), lambda s: s.anchor_steps, _chain_window),
        Method("actionmesh", PARTS["actionmesh"], _plan(64.0),
               lambda s: s.baseline_anchor_steps, _baseline_window),
    )
}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
