"""Chain vs ActionMesh mode on the same random checkpoints and the same footage, in one process.

    python bench/pipeline.py --size small --frames 16 [--device cpu|cuda] [--preset balanced]
                             [--methods chain,actionmesh] [--masks DIR] [--flops]

Compute does not depend on weight values, so random checkpoints in the official shapes give real
timings (``--size full --in-memory`` makes them on the device, no 16 GB write). Both methods run once
untimed (warm-up: allocator, kernels, page cache), then once timed. Prints JSON: per-stage seconds
split into model and host time (from the result's metadata), load time (counted in ``wall_s``, not in
``compute_s`` or the ratio), peak memory (CPU RSS; CUDA peak reserved when present), the
ActionMesh/chain ratio and, with ``--flops``, the exact full-size FLOPs of both methods (bench/flops.py).
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
    """Peak reserved CUDA memory in GiB (what the allocator held: what must fit on the card)."""
    import torch

    if not torch.cuda.is_available():
        return None
    if reset:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return None
    return round(torch.cuda.max_memory_reserved() / 2**30, 3)


def one(method, args, root, out_dir) -> dict:
    job = JobSpec(footage=args.footage, out=str(out_dir / f"{method}.safetensors"), weights=str(root),
                  masks=args.masks, frames=(1, args.frames), method=method, preset=args.preset,
                  device=args.device, precision=args.precision, allow_random_weights=True,
                  settings=dict(_setting(kv) for kv in args.set))
    cuda_peak(reset=True)
    warned = []
    t = time.perf_counter()
    try:
        r = load_result(run(job, on_event=lambda e: warned.append(e["message"]) if e["event"] == "warning" else None))
    except Exception as e:  # an out-of-memory bench reports the error, it does not stop the others
        return {"error": f"{type(e).__name__}: {e}", "warnings": warned, "peak_cuda_reserved_gb": cuda_peak()}
    wall = time.perf_counter() - t
    seconds, model = r.metadata["seconds"], r.metadata.get("model_seconds", {})
    stages = {k: {"s": v, "model_s": model.get(k), "host_s": None if k not in model else round(v - model[k], 3)}
              for k, v in seconds.items()}
    return {"stages": stages, "compute_s": round(sum(v for k, v in seconds.items() if k != "load"), 3),
            "load_s": seconds.get("load"), "wall_s": round(wall, 3), "peak_rss_mb": round(peak_rss_mb()),
            "peak_cuda_reserved_gb": cuda_peak(), "vertices": int(r.vertices.shape[1]),
            "device": r.metadata["device"], "precision": r.metadata["precision"],
            "warnings": [w for w in warned if not w.startswith("SMOKE TEST")]}


def _setting(text: str):
    name, _, value = text.partition("=")
    return name, json.loads(value)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="balanced")
    p.add_argument("--footage", default=str(DEFAULT_FOOTAGE))
    p.add_argument("--weights", help="a weights root (default: random checkpoints under out/bench-weights-SIZE)")
    p.add_argument("--masks", help="per-frame masks folder for the footage")
    p.add_argument("--precision", default="auto")
    p.add_argument("--methods", default="chain,actionmesh")
    p.add_argument("--flops", action="store_true", help="add the exact full-size FLOPs of both methods")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting (JSON value)")
    p.add_argument("--memory-cap-gb", type=float, help="cap this process's CUDA memory (a real out-of-memory test)")
    p.add_argument("--in-memory", action="store_true", help="random weights built on the device, nothing written")
    p.add_argument("--no-warmup", action="store_true")
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    root = Path(args.weights or REPO / "out" / f"bench-weights-{args.size}")
    if args.memory_cap_gb:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb / total))
    if args.in_memory:
        from memory_weights import use_in_memory_weights

        use_in_memory_weights(args.size)
    elif not weights.check(root).ok:
        make_random(root, size=args.size, seed=0)
    report = {"size": args.size, "frames": args.frames, "preset": args.preset, "footage": args.footage}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_warmup:
            for method in methods:
                one(method, argparse.Namespace(**{**vars(args), "frames": min(args.frames, 4)}), root, Path(tmp))
        for method in methods:
            report[method] = one(method, args, root, Path(tmp))
    if all("compute_s" in report.get(m, {}) for m in ("chain", "actionmesh")):  # both ran (an error is reported)
        report["ratio_baseline_over_chain"] = round(report["actionmesh"]["compute_s"] / report["chain"]["compute_s"], 2)
    if args.flops:
        from flops import report as flop_report

        report["full_size_flops"] = flop_report(args.frames, args.preset)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
