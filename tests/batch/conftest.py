import os
import subprocess
import sys

import pytest

from ..conftest import REPO
from .compare import CAMEL, HORSE, QUICK


def run_cli(job: dict, weights, out, threads: int = 1) -> None:
    """The reference: ``python -m blender_stchain run`` for the same job (one thread, like a batch worker)."""
    cmd = [sys.executable, "-m", "blender_stchain", "run", "--footage", job["footage"], "--out", str(out),
           "--weights", str(weights), "--allow-random-weights", "--preset", "fast",
           "--frames", "{}:{}".format(*job["frames"])]
    cmd += ["--masks", job["masks"]] if "masks" in job else []
    for s in QUICK:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)


def _run_results(weights, folder, threads: int) -> dict:
    out = {}
    for job in (CAMEL, HORSE):
        out[job["name"]] = folder / f"{job['name']}.safetensors"
        run_cli(job, weights, out[job["name"]], threads)
    return out


@pytest.fixture(scope="session")
def run_results(tiny_weights, tmp_path_factory):
    """name -> what `run` wrote for the camel and horse clips (one thread: a Ray worker's process)."""
    return _run_results(tiny_weights, tmp_path_factory.mktemp("run-results"), 1)


@pytest.fixture(scope="session")
def run_results_here(tiny_weights, tmp_path_factory):
    """The same with this process's thread count: a worker inside pytest keeps the threads torch started
    with (CPU kernels are chosen for the thread count a process starts with, so a later
    ``set_num_threads`` would not reproduce a fresh one-thread process bit for bit)."""
    import torch

    return _run_results(tiny_weights, tmp_path_factory.mktemp("run-results-here"), torch.get_num_threads())
