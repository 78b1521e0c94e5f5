"""Random backbones made in memory on the run's device, for benches at full size without a 16 GB write.

The tensors are those of ``make-random`` (same per-key distributions, drawn by the device's own
generator), so smoke-test surfaces look alike; the backbone is labelled random like loaded ones.
``use_in_memory_weights(size)`` makes the pipeline build these instead of loading a weights root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.engine import pipeline  # noqa: E402
from blender_stchain.engine.backbone import Backbone  # noqa: E402
from blender_stchain.engine.backbone.facade import CORE_PARTS, store_in_compute_precision  # noqa: E402
from blender_stchain.engine.device import runtime  # noqa: E402
from blender_stchain.engine.weights.loading import build  # noqa: E402
from blender_stchain.engine.weights.random_checkpoints import component_config, random_tensor  # noqa: E402


def random_model(name: str, size: str, device: torch.device, seed: int = 0):
    cfg = component_config(name, size)
    model = build(name, cfg, "meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    part_id = "dinov2" if name == "image_encoder_dinov2" else name
    tensors = {k: random_tensor(part_id, k, s, shapes, seed, device=device) for k, s in shapes.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model = build(name, cfg, device)  # computed buffers (RoPE tables...): build for real
        model.load_state_dict(tensors, strict=True)
    return model.eval().requires_grad_(False)


def random_backbone(size: str, parts=CORE_PARTS, device="auto", precision="auto", seed: int = 0) -> Backbone:
    rt = runtime(device, precision)
    models = {name: random_model(name, size, rt.device, seed) for name in parts}
    store_in_compute_precision(models, rt.dtype)  # as load_backbone does
    den = component_config("denoiser", size)
    identities = [{"part": name, "repo": "in-memory", "file": None, "sha256_header": None, "licence": None,
                   "random": True} for name in parts]
    return Backbone(rt, models, int(den.get("num_tokens_nominal", 2048)), int(den["in_channels"]), identities)


def use_in_memory_weights(size: str, seed: int = 0) -> None:
    """Every later ``pipeline.run`` builds random ``size`` weights on its device instead of loading, and
    skips the weights preflight (there are no files to check: the job's weights root is ignored)."""
    def load(root, device="auto", precision="auto", parts=CORE_PARTS, allow_random=False):
        return random_backbone(size, parts, device, precision, seed)

    pipeline.load_backbone = load
    pipeline.require = lambda root, method="chain", allow_random=False: root
