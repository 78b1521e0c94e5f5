"""Batch throughput: the same 4 clips with 1 and then 2 Ray workers, in one run (local Ray instance).

    python bench/batch.py [--size tiny|small] [--frames 8] [--cpus-per-job 1] [--weights DIR] [--quick]

Random checkpoints in the official shapes give real timings (compute does not depend on weight values).
Each batch starts its own local Ray instance. Prints JSON per worker count: wall seconds and clips per hour
of the whole batch (Ray start and weight loading included) and of its steady part (first clip started to
last clip finished), plus the 2-worker/1-worker speed-up. On a machine whose cores are busy with other
work the numbers are noisy: run it on an otherwise idle machine for figures worth quoting.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blender_stchain.batch.driver import BatchOptions, run_batch  # noqa: E402
from blender_stchain.batch.jobs import parse_jobs  # noqa: E402
from blender_stchain.engine.weights.random_checkpoints import make_random  # noqa: E402

DATA = REPO.parent / "shared/data"
QUICK = dict(anchor_steps=4, grid_resolution=64, coarse_resolution=32, face_budget=3000, landmarks=128,
             candidate_resolution=48)


def clips(frames: int) -> list[dict]:
    """4 clips: two frame ranges each of the camel (RGBA frames) and the horse jump (frames + masks)."""
    camel = {"footage": str(DATA / "rgba_frames/davis_camel")}
    horse = {"footage": str(DATA / "horsejump_gt/video"), "masks": str(DATA / "horsejump_gt/masks")}
    return [{**c, "frames": [a, a + frames - 1], "name": f"{n}_{a}"}
            for n, c in (("camel", camel), ("horse", horse)) for a in (1, 1 + frames)]


def one(workers: int, jobs: Path, root: Path, args, tmp: Path) -> dict:
    out = tmp / f"out-{workers}"
    defaults = {"weights": str(root), "allow_random_weights": True, "preset": args.preset, "device": args.device,
                "settings": QUICK if args.quick else {}}
    opt = BatchOptions(out=out, workers=workers, cpus_per_job=args.cpus_per_job, jobs=str(jobs))
    t0 = time.perf_counter()
    s = run_batch(parse_jobs(str(jobs), out, defaults), opt, stream=sys.stderr)
    wall = time.perf_counter() - t0
    if s["counts"]["done"] != 4:
        raise SystemExit(f"{workers} worker(s): not every clip finished: {s['counts']}")
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    first = min(e["t"] for e in events if e["event"] == "start")
    last = max(e["t"] for e in events if e["event"] == "done")
    return {"workers": workers, "wall_s": round(wall, 2), "clips_per_hour": round(4 * 3600 / wall, 1),
            "steady_s": round(last - first, 2), "steady_clips_per_hour": round(4 * 3600 / (last - first), 1),
            "clip_seconds": sorted(c["seconds"] for c in s["clips"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="tiny", choices=("tiny", "small", "full"))
    p.add_argument("--weights", help="a weights root (default: random checkpoints of --size, made here)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--cpus-per-job", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="fast")
    p.add_argument("--quick", action="store_true", help="the tests' small grids (every stage still runs)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = Path(args.weights) if args.weights else make_random(tmp / "weights", size=args.size, seed=0)
        jobs = tmp / "jobs.jsonl"
        jobs.write_text("".join(json.dumps(c) + "\n" for c in clips(args.frames)))
        runs = [one(w, jobs, root, args, tmp) for w in (1, 2)]
    report = {"size": args.size, "frames_per_clip": args.frames, "cpus_per_job": args.cpus_per_job,
              "quick": args.quick, "runs": runs,
              "speedup_wall": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2),
              "speedup_steady": round(runs[0]["steady_s"] / runs[1]["steady_s"], 2)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
