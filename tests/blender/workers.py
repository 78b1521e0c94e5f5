"""Helpers that start the stand-in worker as a real process for runner/operator tests, and the
interpreter with torch that runs the real worker (the Blender 4.2 / 5.2 venvs have no torch)."""

import json
import os
import sys
from pathlib import Path

from tests.conftest import DATA, REPO

HERE = Path(__file__).resolve().parent
NPZ = DATA / "animated_glb" / "mushroom.npz"
WORKER_PYTHON = os.environ.get("STCHAIN_WORKER_PYTHON", sys.executable)  # scripts/test.sh: .venv


def stub_env(mode: str) -> dict:
    env = dict(os.environ, STUB_MODE=mode, STUB_NPZ=str(NPZ))
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO)])
    return env


def write_job(folder: Path, weights=None, frames=(1, 6)) -> Path:
    job = folder / "job.json"
    job.write_text(json.dumps({"footage": str(folder), "out": str(folder / "result.safetensors"),
                               "weights": weights, "frames": list(frames)}))
    return job
