"""How honest is the time estimate? Runs one job and compares, at each progress event, the ETA with the
time that was really left (known at the end).

    python bench/eta.py --footage DIR --weights DIR [--masks DIR] [--method chain] [--preset fast] [--frames 1:16]

Prints the ETA error at 10/25/50/75% of the elapsed time, and when the first ETA came.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.contracts.job import JobSpec  # noqa: E402
from blender_stchain.contracts.options import parse_frames  # noqa: E402
from blender_stchain.contracts.result import load_result  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--footage", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--masks")
    p.add_argument("--method", default="chain")
    p.add_argument("--preset", default="fast")
    p.add_argument("--frames")
    p.add_argument("--out", default="/tmp/stchain-eta.safetensors")
    p.add_argument("--events", help="also write every progress event with its time here (JSON lines)")
    args = p.parse_args(argv)
    from blender_stchain.engine.pipeline import run

    seen = []
    t0 = time.monotonic()
    job = JobSpec(footage=args.footage, out=args.out, weights=args.weights, preset=args.preset, masks=args.masks,
                  method=args.method,
                  frames=parse_frames(args.frames), allow_random_weights=True)
    path = run(job, on_event=lambda e: seen.append((time.monotonic() - t0, e)) if e.get("event") == "progress"
               else None)
    total = time.monotonic() - t0
    if args.events:
        Path(args.events).write_text("".join(json.dumps({"t": round(t, 3), **e}) + "\n" for t, e in seen))
    timed = [(t, e["eta_s"], e["stage"]) for t, e in seen if e.get("eta_s") is not None]
    first = timed[0][0] if timed else None
    print(f"total {total:.1f} s; first ETA after {first:.1f} s ({timed[0][2]})" if timed else "no ETA")
    estimate = load_result(path).metadata.get("time_estimate", {})
    print(f"calibration {estimate.get('calibration_s')} s; seconds per unit {estimate.get('seconds_per_unit')}")
    for share in (0.1, 0.25, 0.5, 0.75):
        t, eta, stage = min(timed, key=lambda x: abs(x[0] - share * total))
        truth = total - t
        print(f"at {t:6.1f} s ({share:.0%}, {stage:8s}): ETA {eta:6.1f} s, really {truth:6.1f} s "
              f"({(eta - truth) / truth:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
