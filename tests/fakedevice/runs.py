"""The tiny pipeline on the simulated device: a backbone loader that moves the CPU-loaded models onto
it, and per-stage labels for the harness's counters."""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from blender_stchain.engine import pipeline
from blender_stchain.engine.backbone import facade
from blender_stchain.engine.backbone.parts import Parts
from blender_stchain.engine.device import Runtime
from tests.fakedevice.harness import FAKE, Device

STAGES = {"_anchor_latent": "anchor", "_anchor_surface": "surface", "_window": "window", "_store": "store",
          "_camera_stage": "camera"}


def fake_loader(root, device="auto", precision="auto", parts=facade.CORE_PARTS, allow_random=False):
    """``load_backbone``'s signature: loads on the CPU in fp32, then moves every model to the simulated
    device (its parameters swapped for device tensors) under an fp32 runtime on it."""
    bb = facade.load_backbone(root, "cpu", "fp32", parts, allow_random)
    moved = {name: model.to(FAKE) for name, model in bb.models.items()}  # every part, read on the host first
    return dataclasses.replace(bb, rt=Runtime(FAKE, torch.float32), models=Parts(FAKE, {}, loaded=moved))


@contextlib.contextmanager
def staged_pipeline(dev: Device, monkeypatch):
    """Each stage function of the pipeline counted under its own label (windows numbered)."""
    windows = [0]
    for name, label in STAGES.items():
        fn = getattr(pipeline, name)

        def wrapped(*a, _fn=fn, _label=label, **kw):
            if _label == "window":
                windows[0] += 1
            name = f"window {windows[0]}" if _label == "window" else _label
            with dev.staged(name):
                return _fn(*a, **kw)

        monkeypatch.setattr(pipeline, name, wrapped)
    yield windows
