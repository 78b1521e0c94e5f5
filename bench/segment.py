"""SAM 2.1 segmentation: import, load and per-frame time and peak memory, random weights, JSON to stdout.

    python bench/segment.py [--size full|small|tiny] [--frames 8] [--device auto|cpu|cuda] [--footage bear.mp4]

``full`` is the official hiera-tiny architecture at 1024 px (random weights time like real ones). The
prompt is on the middle frame, so both propagation directions run. Peak memory is VmHWM (CPU) or the
CUDA peak allocation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def vm_hwm_mb() -> float:
    return next(int(s.split()[1]) for s in open("/proc/self/status") if s.startswith("VmHWM")) / 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="full", choices=("tiny", "small", "full"))
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--footage", default=str(DATA / "videos" / "bear.mp4"))
    args = p.parse_args()
    t = time.perf_counter()
    import torch  # noqa: F401
    t_torch = time.perf_counter() - t
    t = time.perf_counter()
    import transformers  # noqa: F401
    from blender_stchain.engine.device import runtime
    from blender_stchain.engine.footage import open_footage
    from blender_stchain.engine.segment.model import load, write_random
    from blender_stchain.engine.segment.prompts import parse, resolve
    from blender_stchain.engine.segment.propagate import Propagator
    t_import = time.perf_counter() - t
    dev = runtime(args.device).device
    with tempfile.TemporaryDirectory() as tmp, open_footage(args.footage, frames=(1, args.frames)) as clip:
        write_random(tmp, args.size)
        t = time.perf_counter()
        net, _ = load(tmp, device=dev)
        t_load = time.perf_counter() - t
        w, h = clip.source_size
        fps = resolve(parse([f"{w // 2},{h // 2}@{args.frames // 2 + 1}"]), clip.frame_numbers, (w, h))
        frames = [clip.read(i)[0] for i in range(clip.count)]  # decode outside the timing
        times = []
        t = time.perf_counter()
        for _ in Propagator(net, lambda i: frames[i], clip.count, (w, h)).run(fps):
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
    params = sum(p.numel() for p in net.parameters())
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else vm_hwm_mb()
    print(json.dumps({"size": args.size, "device": str(dev), "params_m": round(params / 1e6, 1),
                      "image_size": net.config.image_size, "frames": len(times),
                      "import_torch_s": round(t_torch, 2), "import_transformers_s": round(t_import, 2),
                      "load_s": round(t_load, 2), "first_frame_s": round(times[0], 3),
                      "per_frame_s": round(sum(times[1:]) / max(1, len(times) - 1), 3),
                      "peak_mb": round(peak)}))


if __name__ == "__main__":
    main()
