import os
import subprocess
import sys

import pytest

from ..conftest import REPO
from .compare import CAMEL, HORSE, QUICK


def run_cli(job: dict, weights, out) -> None:
    """The reference: ``python -m blender_stchain run`` for the same job (one thread, like a batch worker)."""
    cmd = [sys.executable, "-m", "blender_stchain", "run", "--footage", job["footage"], "--out", str(out),
           "--weights", str(weights), "--allow-random-weights", "--preset", "fast",
           "--frames", "{}:{}".format(*job["frames"])]
    cmd += ["--masks", job["masks"]] if "masks" in job else []
    for s in QUICK:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def run_results(tiny_weights, tmp_path_factory):
    """name -> what `run` wrote for the camel and horse clips."""
    folder = tmp_path_factory.mktemp("run-results")
    out = {}
    for job in (CAMEL, HORSE):
        out[job["name"]] = folder / f"{job['name']}.safetensors"
        run_cli(job, tiny_weights, out[job["name"]])
    return out
