"""Helpers shared by the engine and reliability tests: short pipeline jobs on random weights and the
peak memory of a whole run in a fresh process."""

import os
import subprocess
import sys

from blender_stchain.contracts.job import JobSpec
from tests.conftest import DATA, REPO

# Small grids keep the smoke runs short; every stage still runs.
QUICK = dict(anchor_steps=4, grid_resolution=64, coarse_resolution=32, face_budget=3000, landmarks=128,
             candidate_resolution=48, baseline_steps=6, baseline_anchor_steps=4)


def quick_job(footage, out, weights, **kw):
    settings = {**QUICK, **kw.pop("settings", {})}
    return JobSpec(footage=str(footage), out=str(out), weights=str(weights), allow_random_weights=True,
                   preset="fast", settings=settings, **kw)


def peak_rss_mb(frames: int, weights, tmp_path, footage=DATA / "videos/lifting1_fg.mp4") -> float:
    """Peak resident memory of a whole run in a fresh process (the result stays in ``tmp_path``).

    VmHWM, not ``ru_maxrss``: Linux carries the parent's peak into ``ru_maxrss`` across fork/exec, so
    a child of a big pytest process reported the parent's ~1 GB instead of its own ~0.4 GB."""
    job = quick_job(footage, tmp_path / f"m{frames}.safetensors", weights,
                    frames=(1, frames), settings=dict(landmarks=64, candidate_resolution=32))
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from blender_stchain.contracts.job import JobSpec\nfrom blender_stchain.engine.pipeline import run\n"
            f"run(JobSpec.load({str(job.save(tmp_path / f'job{frames}.json'))!r}))\n"
            "print(next(int(s.split()[1]) for s in open('/proc/self/status') if s.startswith('VmHWM')) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])
