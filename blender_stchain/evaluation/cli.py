"""``python -m blender_stchain eval BENCH ...`` and ``eval make-bench OUT`` (the top-level CLI hands over here)."""

from __future__ import annotations

import argparse
import json

from ..contracts.options import WEIGHT_OPTIONS, add_options
from .errors import EvalError


def main(argv) -> int:
    argv = list(argv)
    if argv and argv[0] == "make-bench":
        from .synthetic.render import main as make_bench_main  # bpy side: no torch is imported on this path

        return make_bench_main(argv[1:])
    return run_eval(argv)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m blender_stchain eval",
        description="score the pipeline on a benchmark folder (ours from `eval make-bench OUT`, or "
                    "ActionBench's data/ folder): ActionBench CD-3D/CD-4D/CD-M, camera and TAP-Vid metrics")
    p.add_argument("bench", help="benchmark folder (one sub-folder per clip)")
    p.add_argument("--out", default="eval_out", help="folder for results/ and metrics.json (default eval_out)")
    p.add_argument("--method", default="chain", choices=["chain", "actionmesh", "both"])
    p.add_argument("--results", help="score existing results (RESULTS/CLIP/METHOD.safetensors) instead of running")
    p.add_argument("--oracle", action="store_true",
                   help="feed the GT tracks through dense motion + camera instead of the model (harness check)")
    add_options(p, ("--preset", "--set", "--precision", *WEIGHT_OPTIONS))  # the model's; ICP runs on --device too
    p.add_argument("--limit", type=int, help="only the first N clips")
    p.add_argument("--icp-points", type=int, default=10_000, help="ActionBench: 10000 (fewer = faster, not comparable)")
    p.add_argument("--chamfer-points", type=int, default=100_000, help="ActionBench: 100000")
    p.add_argument("--icp-iterations", type=int, default=200, help="ActionBench: 200")
    return p


def run_eval(argv) -> int:
    from ..contracts.options import parse_overrides
    from .report import table
    from .runner import evaluate

    args = parser().parse_args(argv)
    methods = ("chain", "actionmesh") if args.method == "both" else (args.method,)
    if args.oracle and args.results:
        raise EvalError("--oracle and --results exclude each other")
    counts = {"n_pts_icp": args.icp_points, "n_pts_chamfer": args.chamfer_points,
              "icp_iterations": args.icp_iterations, "device": _icp_device(args.device)}
    report = evaluate(args.bench, args.out, methods=methods, results=args.results, oracle=args.oracle,
                      preset=args.preset, overrides=parse_overrides(args.set), weights=args.weights,
                      device=args.device, limit=args.limit, counts=counts,
                      allow_random_weights=args.allow_random_weights, precision=args.precision)
    print(table(report))
    print(json.dumps({"metrics": f"{args.out}/metrics.json", "label": report["label"]}))
    return 0


def _icp_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device if device.startswith("cuda") else "cpu"
