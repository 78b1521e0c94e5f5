"""A folder of RGBA PNG frames of a textured, turning, moving blob: footage for benches on machines
without the shared data (the GPU slot). Content does not change the compute, only its shape does.

    python bench/synthetic_footage.py OUT_DIR [--frames 256] [--size 480]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def frame(i: int, frames: int, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    phase = 2 * np.pi * i / max(frames, 1)
    cx, cy, turn = 0.08 * np.sin(phase), 0.05 * np.cos(2 * phase), 0.6 * np.sin(phase)
    u = (x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)
    v = -(x - cx) * np.sin(turn) + (y - cy) * np.cos(turn)
    inside = (u / 0.28) ** 2 + (v / 0.18) ** 2 + 0.3 * np.sin(6 * np.arctan2(v, u) + phase) * 0.1 < 1
    rgb = np.stack([128 + 100 * np.sin(20 * u), 128 + 100 * np.cos(15 * v), 128 + 80 * np.sin(9 * (u + v))], -1)
    return np.dstack([rgb.astype(np.uint8), (inside * 255).astype(np.uint8)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--size", type=int, default=480)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.frames):
        Image.fromarray(frame(i, args.frames, args.size), "RGBA").save(out / f"{i:05d}.png", compress_level=1)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
