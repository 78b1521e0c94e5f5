"""Chain vs ActionMesh mode on the same random checkpoints and the same footage, in one process.

    python bench/pipeline.py --size small --frames 16 [--device cpu|cuda] [--preset balanced]

Compute does not depend on weight values, so random checkpoints in the official shapes give real
timings. Both methods run once untimed (warm-up: allocator, kernels, page cache), then once timed;
weights load before each run and load time is reported separately (not in the ratio). Prints JSON:
per-stage seconds, peak memory (CPU RSS; CUDA when present) and the baseline/chain ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blender_stchain.contracts.job import JobSpec  # noqa: E402
from blender_stchain.contracts.result import load_result  # noqa: E402
from blender_stchain.engine import weights  # noqa: E402
from blender_stchain.engine.pipeline import run  # noqa: E402
from blender_stchain.engine.weights.random_checkpoints import make_random  # noqa: E402

DEFAULT_FOOTAGE = REPO.parent / "shared/data/videos/lifting1_fg.mp4"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cuda_peak(reset: bool = False):
    import torch

    if not torch.cuda.is_available():
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def one(method, args, root, out_dir) -> dict:
    job = JobSpec(footage=args.footage, out=str(out_dir / f"{method}.safetensors"), weights=str(root),
                  frames=(1, args.frames), method=method, preset=args.preset, device=args.device,
                  allow_random_weights=True)
    cuda_peak(reset=True)
    t = time.perf_counter()
    r = load_result(run(job))
    wall = time.perf_counter() - t
    seconds = r.metadata["seconds"]
    return {"seconds": seconds, "compute_s": round(sum(v for k, v in seconds.items() if k != "load"), 3),
            "wall_s": round(wall, 3), "peak_rss_mb": round(peak_rss_mb()), "peak_cuda_gb": cuda_peak(),
            "vertices": int(r.vertices.shape[1]), "device": r.metadata["device"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="balanced")
    p.add_argument("--footage", default=str(DEFAULT_FOOTAGE))
    p.add_argument("--weights", help="a weights root (default: random checkpoints under out/bench-weights-SIZE)")
    p.add_argument("--no-warmup", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.weights or REPO / "out" / f"bench-weights-{args.size}")
    if not weights.check(root).ok:
        make_random(root, size=args.size, seed=0)
    report = {"size": args.size, "frames": args.frames, "preset": args.preset, "footage": args.footage}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_warmup:
            for method in ("chain", "actionmesh"):
                one(method, argparse.Namespace(**{**vars(args), "frames": min(args.frames, 4)}), root, Path(tmp))
        for method in ("chain", "actionmesh"):
            report[method] = one(method, args, root, Path(tmp))
    report["ratio_baseline_over_chain"] = round(report["actionmesh"]["compute_s"] / report["chain"]["compute_s"], 2)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
