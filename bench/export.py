"""Export benchmark: time, file size and peak resident memory of ``python -m blender_stchain export`` per
format, for a result of N frames x ~20k vertices (the real mushroom mesh, its 16 frames repeated).

    python bench/export.py [--frames 256] [--formats abc,usdc,glb] [--npz PATH]

Each export runs as its own process (the real command's ``main``); its peak RSS is the kernel's
high-water mark of that process's memory after it started (``VmHWM``, Linux: a forked child's
``ru_maxrss`` would include this benchmark's own pages), so one format never hides another's. JSON out.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.blender.synth import result_from_npz  # noqa: E402

SHARED = Path(os.environ.get("STCHAIN_SHARED_DIR", ROOT.parent / "shared"))


def write_result(path: Path, frames: int, npz: Path) -> Path:
    """A synthetic result of ``frames`` frames (30 fps footage) saved as a real result file. The mesh grows
    0.1 % a frame so no two frames are equal (Alembic and USD store a repeated sample once)."""
    r = result_from_npz(npz, frames=frames, tracks=0)
    r.vertices *= (1.0 + 1e-3 * np.arange(frames, dtype=np.float32))[:, None, None]
    r.metadata["footage"] = {"fps": "30"}
    return r.save(path)


PEAK = ("import re, sys; from blender_stchain.cli import main; rc = main(sys.argv[1:]); "
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
        "print('peak_rss_kb', hwm, file=sys.stderr); sys.exit(rc)")


def peak_rss_mb(stderr: str) -> float:
    return int(stderr.split("peak_rss_kb ")[-1].split()[0]) / 1024


def measure(result: Path, out: Path) -> dict:
    """Run the export command once; seconds, output MB and the process's peak RSS in MB."""
    out.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PEAK, "export", str(result), "--out", str(out)], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    size = sum(f.stat().st_size for f in out.parent.iterdir())  # a .gltf's .bin too
    return {"seconds": round(seconds, 2), "file_mb": round(size / 1e6, 1),
            "peak_rss_mb": round(peak_rss_mb(p.stderr), 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--formats", default="abc,usdc,usda,glb")
    p.add_argument("--npz", default=str(SHARED / "data" / "animated_glb" / "mushroom.npz"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = write_result(Path(tmp) / "r.safetensors", args.frames, Path(args.npz))
        for ext in args.formats.split(","):
            row = measure(result, Path(tmp) / ext.strip(".") / f"clip.{ext.strip('.')}")
            print(json.dumps({"bench": "export", "format": ext, "frames": args.frames,
                              "result_mb": round(result.stat().st_size / 1e6, 1), **row, "cpu_count": os.cpu_count()}),
                  flush=True)


if __name__ == "__main__":
    main()
