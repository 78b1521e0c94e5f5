"""The CPU speed target: ``run`` at a base commit and at this checkout, back to back, on the same clip.

    python bench/speedup.py [--base 614e60d] [--pairs 3] [--weights DIR] [--clip DATA/horsejump_gt]

Each side is a fresh ``python -m blender_stchain run`` of the clip's video with its masks (default settings,
tiny random weights made in ``--weights`` when missing), one thread (``OMP_NUM_THREADS=1``) on both sides so a
pair is comparable on a shared machine. The base runs from a temporary git worktree, removed at the end.
Prints each pair's wall seconds and ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(tree: Path, clip: Path, weights: Path) -> float:
    """Wall seconds of one run of the checkout in ``tree`` (imports and start-up included)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "blender_stchain", "run", "--footage", str(clip / "video"), "--masks",
               str(clip / "masks"), "--weights", str(weights), "--allow-random-weights", "--device", "cpu",
               "--out", str(Path(out) / "r.safetensors")]  # not a terminal: JSON lines on both sides
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        t = time.perf_counter()
        subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="614e60d")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--weights", type=Path, default=Path(tempfile.gettempdir()) / "stchain-speed-tiny")
    p.add_argument("--clip", type=Path, default=REPO.parent / "shared/data/horsejump_gt")
    args = p.parse_args(argv)
    if not args.weights.exists():
        subprocess.run([sys.executable, "-m", "blender_stchain", "weights", "make-random", "--size", "tiny",
                        str(args.weights)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.base], cwd=REPO, check=True)
        try:
            for i in range(args.pairs):
                then, now = one(base, args.clip, args.weights), one(REPO, args.clip, args.weights)
                print(f"pair {i + 1}: {args.base} {then:.2f} s, this checkout {now:.2f} s: {then / now:.2f}x", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
