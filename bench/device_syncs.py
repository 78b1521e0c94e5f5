"""Host synchronisations per pipeline stage on the simulated accelerator (tests/fakedevice).

    python bench/device_syncs.py [--json] [--methods chain,actionmesh] [--flavours cuda,mps]

Runs the tiny pipeline (random tiny weights, horsejump frames 1-9 with its masks, two windows of 5)
on the simulated device of each flavour and counts what would stall a real one: ``.item()``/``bool()``,
``nonzero``, boolean-mask indexing, ``unique`` and copies to the host, per stage (the anchor's stage 0,
its surface, each window, the host thread's storing). Counts, not times: they are the same on any
machine. A run the device rules stop is reported with its error and what it counted until then.
``--json`` prints one line: ``{method: {flavour: {stage: syncs, ..., "error": ...}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402  (its MonkeyPatch labels the stages)

from blender_stchain.engine.pipeline import run  # noqa: E402
from blender_stchain.engine.weights.random_checkpoints import make_random  # noqa: E402
from tests.conftest import DATA  # noqa: E402
from tests.fakedevice.harness import simulated  # noqa: E402
from tests.fakedevice.runs import fake_loader, staged_pipeline  # noqa: E402
from tests.helpers import quick_job  # noqa: E402


def count(method: str, flavour: str, weights: Path, out: Path) -> dict:
    job = quick_job(DATA / "horsejump_gt/video", out / f"{method}-{flavour}.safetensors", weights,
                    masks=str(DATA / "horsejump_gt/masks"), frames=(1, 9), method=method,
                    settings=dict(window_size=5))
    patch = pytest.MonkeyPatch()
    error = None
    with simulated(flavour) as dev, staged_pipeline(dev, patch):
        try:
            run(job, backbones=fake_loader)
        except Exception as e:  # what the device rules stopped (code before its fixes)
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    patch.undo()
    stages = dev.per_stage()
    return stages | ({"error": error} if error else {})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--methods", default="chain,actionmesh")
    p.add_argument("--flavours", default="cuda,mps")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_random(Path(tmp) / "weights", size="tiny", seed=0)
        table = {m: {f: count(m, f, weights, Path(tmp)) for f in args.flavours.split(",")}
                 for m in args.methods.split(",")}
    if args.json:
        print(json.dumps(table))
        return 0
    for method, flavours in table.items():
        for flavour, stages in flavours.items():
            error = stages.pop("error", None)
            print(f"{method:10s} {flavour:5s} " + ", ".join(f"{k} {v}" for k, v in stages.items()))
            if error:
                print(f"{'':17s}stopped: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
