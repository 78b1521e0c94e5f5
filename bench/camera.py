"""Seconds of the camera stage per clip length on a synthetic problem, one run each.

    python bench/camera.py [--frames 16,64,256] [--matches 300]

An icosphere-like UV sphere (2.5k vertices) deforms slightly and is seen by an orbiting camera;
300 landmarks per frame with 1 px noise and 20% outliers. Times ``solve_long`` and ``tracks_2d``
(projection with occlusion) separately, then the whole stage as the pipeline runs it (``stage.estimate``:
solve, visibility, refinement from the first solve, verdict; then the final ``tracks_2d``). Linear
scaling in clip length is the target.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.engine import camera  # noqa: E402
from blender_stchain.engine.camera import stage  # noqa: E402


def sphere(n=36):
    th, ph = np.meshgrid(np.linspace(0.1, np.pi - 0.1, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False),
                         indexing="ij")
    V = np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    idx = np.arange(n * 2 * n).reshape(n, 2 * n)
    a, b = idx[:-1], np.roll(idx, -1, 1)[:-1]
    c, d = idx[1:], np.roll(idx, -1, 1)[1:]
    F = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return V, F


def problem(T, matches, seed=0):
    rng = np.random.default_rng(seed)
    V, F = sphere()
    wobble = 1 + 0.1 * np.sin(np.linspace(0, 4, T))[:, None, None] * V[None, :, 1:2]
    verts = V[None] * wobble
    W, H = 1280, 720
    f = 0.5 * W / np.tan(np.radians(25))
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    angles = np.radians(20 + 90 * np.arange(T) / max(T - 1, 1))
    R = camera.rodrigues(np.stack([np.zeros(T), angles, np.zeros(T)], -1))
    t = np.tile([0.0, 0.0, 6.0], (T, 1))
    w2c = camera.rigid(R, t)
    ids = rng.choice(len(V), matches, replace=False)
    X = verts[:, ids]
    uv = camera.project(K, w2c, X) + rng.normal(0, 1.0, (T, matches, 2))
    bad = rng.random((T, matches)) < 0.2
    uv[bad] = rng.uniform([0, 0], [W, H], (int(bad.sum()), 2))
    return verts, F, ids, X, uv, np.ones((T, matches)), (W, H), K


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", default="16,64,256")
    ap.add_argument("--matches", type=int, default=300)
    args = ap.parse_args()
    for T in (int(v) for v in args.frames.split(",")):
        verts, F, ids, X, uv, w, size, K = problem(T, args.matches)
        t0 = time.perf_counter()
        sol = camera.solve_long(X, uv, w, size)
        t1 = time.perf_counter()
        camera.tracks_2d(verts, F, ids, sol.K, sol.world_to_camera, size)
        t2 = time.perf_counter()
        full = stage.estimate(X, uv, w, np.ones_like(w), size, verts, F, ids)
        camera.tracks_2d(verts, F, ids, full.K, full.world_to_camera, size)
        t3 = time.perf_counter()
        print(f"{T:4d} frames: solve {t1 - t0:7.2f} s, tracks_2d {t2 - t1:6.2f} s, together {t2 - t0:7.2f} s; "
              f"whole stage {t3 - t2:7.2f} s ({1000 * (t3 - t2) / T:.0f} ms/frame, "
              f"{'trusted' if full.estimated else full.reason}), focal {full.K[0, 0] / K[0, 0] - 1:+.2%}", flush=True)


if __name__ == "__main__":
    main()
