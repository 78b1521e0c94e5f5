"""Helpers that start the stand-in worker as a real process for runner/operator tests."""

import json
import os
from pathlib import Path

from tests.conftest import DATA, REPO

HERE = Path(__file__).resolve().parent
NPZ = DATA / "animated_glb" / "mushroom.npz"


def stub_env(mode: str) -> dict:
    env = dict(os.environ, STUB_MODE=mode, STUB_NPZ=str(NPZ))
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO)])
    return env


def write_job(folder: Path, weights=None, frames=(1, 6)) -> Path:
    job = folder / "job.json"
    job.write_text(json.dumps({"footage": str(folder), "out": str(folder / "result.safetensors"),
                               "weights": weights, "frames": list(frames)}))
    return job
