"""One chain window's time and decoder calls (``track_window``), random weights, JSON to stdout.

    python bench/window_decode.py --weights DIR [--code REPO] [--frames 16] [--repeats 3] [--device auto]

Counts the decoder calls of a window of ``--frames`` random images with the known frame first (a later
window's layout), default settings: the facade's SDF calls (one latent's ``FrameDecoder.sdf``, a batch's
``BatchDecoder.sdf_many``: the calls a GPU launches), its attention maps, and the VAE's own ``query``
calls (on a CPU a batched call runs row by row) and ``decode_kv`` calls.
``--code`` imports the package from another checkout (e.g. main) for a before/after on one machine.
Make weights with ``python -m blender_stchain weights make-random DIR --size tiny|small``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def counting(module, name: str, counts: dict) -> None:
    original = getattr(module, name)

    def counted(*a, **kw):
        counts[name] = counts.get(name, 0) + 1
        return original(*a, **kw)

    setattr(module, name, counted)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--code", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    args = p.parse_args(argv)
    sys.path.insert(0, args.code)
    import torch

    from blender_stchain.contracts.settings import Settings
    from blender_stchain.engine.backbone import facade, load_backbone
    from blender_stchain.engine.chain.window import track_window
    from blender_stchain.engine.geometry import surface

    bb = load_backbone(args.weights, device=args.device, precision=args.precision, allow_random=True)
    settings = Settings()
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(bb.num_tokens, bb.latent_channels, generator=g)
    anchor = surface.extract(bb.sdf(latent), resolution=64, coarse_resolution=16, device=bb.device)
    landmarks = torch.as_tensor(anchor.vertices[:: max(1, len(anchor.vertices) // settings.landmarks)])
    pixels = torch.rand(args.frames, 3, bb.image_px, bb.image_px, generator=g)
    with bb.autocast():
        context = bb.encode_images(pixels)
    vae, counts, seconds = bb.models["vae"], {}, []
    counting(vae, "query", counts)
    counting(vae, "decode_kv", counts)
    counting(facade.FrameDecoder, "sdf", counts)
    counting(facade.FrameDecoder, "attention", counts)
    if hasattr(facade, "BatchDecoder"):  # the batched decoder (absent before it)
        counting(facade.BatchDecoder, "sdf_many", counts)
    for _ in range(args.repeats + 1):  # the first: warm-up (kernel selection, allocator)
        counts.clear()
        t = time.perf_counter()
        with bb.autocast():
            out = track_window(bb, context, 0, latent, landmarks, settings)
        if bb.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
    print(json.dumps({
        "code": args.code, "weights": args.weights, "device": str(bb.device), "precision": bb.precision,
        "frames": args.frames, "landmarks": len(landmarks), "window_s": [round(s, 3) for s in seconds[1:]],
        "median_s": round(statistics.median(seconds[1:]), 3),
        "sdf_calls": counts.get("sdf", 0) + counts.get("sdf_many", 0), "attention_calls": counts.get("attention", 0),
        "vae_query_calls": counts.get("query", 0), "decode_kv_calls": counts.get("decode_kv", 0), "model_s": round(bb.clock.seconds, 3),
        "mean_confidence": round(float(out.confidence.mean()), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
