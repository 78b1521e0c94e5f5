"""Exact full-size FLOPs of a chain run and an ActionMesh-mode run, counted on the meta device.

    python bench/flops.py [--frames 16] [--preset balanced]

Each model call the pipeline makes is run once on meta tensors in the official full-size shapes
under ``torch.utils.flop_counter`` (no weights, no memory); a run's total is each call's count
times how often the method makes it. The model calls are exact; how many SDF queries a surface
takes depends on the shape, so the query counts come from ``surface.sample_surface_cells`` on a
sphere of radius 0.6 (a compact object like the footage's) at the run's grid settings. Also the
GiB of weights a bf16 GPU run holds before and after the stage-0 models are released.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.contracts.settings import preset  # noqa: E402
from blender_stchain.engine.backbone.facade import STAGE0_PARTS, store_in_compute_precision  # noqa: E402
from blender_stchain.engine.chain.windows import plan_windows  # noqa: E402
from blender_stchain.engine.geometry import surface  # noqa: E402
from blender_stchain.engine.weights.loading import build  # noqa: E402
from blender_stchain.engine.weights.preflight import PARTS  # noqa: E402
from blender_stchain.engine.weights.random_checkpoints import component_config  # noqa: E402

CONTEXT = 257  # DINOv2 tokens per 224 x 224 image (CLS + 16 x 16 patches)
PROBE = 4096  # query points per probe call; per-point cost is linear in the count


@functools.cache
def model(name: str):
    return build(name, component_config(name, "full"), "meta").eval()


def flops(fn) -> int:
    real = torch.autocast
    # the models' fp32 islands open autocast scopes on their tensors' device, which meta has not
    torch.autocast = lambda device_type, *a, **k: contextlib.nullcontext() if device_type == "meta" else real(
        device_type, *a, **k)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.autocast = real
    return counter.get_total_flops()


def meta(*shape):
    return torch.empty(*shape, device="meta")


@functools.cache
def per_call() -> dict:
    """FLOPs of one call of each kind, full size."""
    dit, den, vae, ae = (model(n) for n in ("transformer", "denoiser", "vae", "autoencoder"))
    n, c = 2048, 64
    d_img = component_config("dinov2", "full")["hidden_size"]
    kv = vae.decode_kv(meta(1, n, c))
    out = {
        "dinov2_image": flops(lambda: model("dinov2")(meta(1, 3, 224, 224))),
        "stage0_image": flops(lambda: model("image_encoder_dinov2")(meta(1, 3, 224, 224))),
        "dit_cfg_step": flops(lambda: dit(meta(2, n, c), meta(2), meta(2, CONTEXT, d_img))),
        "decode_kv": flops(lambda: vae.decode_kv(meta(1, n, c))),
        "sdf_query": flops(lambda: vae.query(kv, meta(1, PROBE, 3))) / PROBE,
    }
    for batch in (1, 2):
        out[f"denoiser_step_b{batch}"] = lambda t, b=batch: flops(lambda: den(
            meta(b, t, n, c), meta(b, t, CONTEXT, d_img), meta(b, t), meta(b), meta(b, t)))
    out["autoencoder"] = lambda t, v: flops(lambda: ae(meta(1, t, n, c), meta(1, t), meta(1), meta(1, t - 1),
                                                       meta(1, v, 6)))
    return out


@functools.cache
def surface_queries(resolution: int, coarse: int) -> tuple[int, int]:
    """(SDF queries, vertices) of one surface at these grid settings, on a sphere of radius 0.6."""
    cells, values, queries = surface.sample_surface_cells(lambda p: 0.6 - p.norm(dim=-1), resolution=resolution,
                                                          coarse_resolution=coarse)
    vertices, _ = surface.march(cells, values, resolution, 1.005)
    return queries, len(vertices)


def method_flops(method: str, frames: int, settings) -> dict:
    """FLOPs by stage of one ``method`` run on ``frames`` frames, full size."""
    c = per_call()
    windows = plan_windows(frames, settings.window_size)
    anchor_q, _ = surface_queries(settings.grid_resolution, settings.coarse_resolution)
    steps = settings.anchor_steps if method == "chain" else settings.baseline_anchor_steps
    out = {"anchor": c["stage0_image"] + steps * c["dit_cfg_step"] + c["decode_kv"] + anchor_q * c["sdf_query"],
           "images": frames * c["dinov2_image"], "stage1": 0, "decoder": 0, "stage2": 0}
    cand_q, cand_v = surface_queries(settings.candidate_resolution, settings.candidate_coarse_resolution)
    L = settings.landmarks
    for w in windows:
        T = w.stop - w.start
        if method == "chain":
            b = 1 if settings.stage1_guidance is None else 2
            out["stage1"] += settings.chain_steps * c[f"denoiser_step_b{b}"](T)
            # known frame: landmark attention; every other frame: its surface and its attention map
            out["decoder"] += c["decode_kv"] + L * c["sdf_query"]
            out["decoder"] += (T - 1) * (c["decode_kv"] + (cand_q + cand_v) * c["sdf_query"])
        else:
            out["stage1"] += settings.baseline_steps * c["denoiser_step_b2"](T)
            out["stage2"] += c["autoencoder"](T, 20_000)
            out["decoder"] += c["decode_kv"] + L * c["sdf_query"]
    out["total"] = sum(out.values())
    return out


def resident_weights(method: str, dtype=torch.bfloat16) -> dict:
    """GiB of weights a GPU run holds (meta device, stored as ``load_backbone`` stores them in ``dtype``):
    during stage 0, and from the anchor surface on (the stage-0 models released)."""
    models = {name: build(name, component_config(name, "full"), "meta") for name in PARTS[method]}
    store_in_compute_precision(models, dtype)
    size = {name: sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers())) for name, m in models.items()}
    later = sum(v for name, v in size.items() if name not in STAGE0_PARTS)
    return {"stage0": round(sum(size.values()) / 2**30, 2), "after_stage0": round(later / 2**30, 2)}


def report(frames: int, preset_name: str) -> dict:
    s = preset(preset_name)
    chain, am = method_flops("chain", frames, s), method_flops("actionmesh", frames, s)
    return {"frames": frames, "preset": preset_name, "unit": "TFLOP",
            "chain": {k: round(v / 1e12, 2) for k, v in chain.items()},
            "actionmesh": {k: round(v / 1e12, 2) for k, v in am.items()},
            "ratio_actionmesh_over_chain": round(am["total"] / chain["total"], 2),
            "resident_weights_gib_bf16": {m: resident_weights(m) for m in ("chain", "actionmesh")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--preset", default="balanced")
    args = p.parse_args(argv)
    print(json.dumps(report(args.frames, args.preset), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
