"""A stand-in worker process speaking the real protocol (until engine/worker.py lands).

Run as ``python -m stub_worker JOB.json`` (tests put this folder on PYTHONPATH). It validates the
job with the real JobSpec, streams progress, honours the cancel file, and writes a real Result
made from the animated GLB npz named by ``STUB_NPZ``. ``STUB_MODE`` picks a failure:
``ok`` (default), ``raise`` (an exception), ``crash`` (SIGKILL itself mid-run), ``hang`` (runs
until cancelled), ``deaf`` (runs and ignores the cancel file: only SIGTERM stops it), ``nocamera`` (ok, with the
camera stage's refusal warning). A ``weights`` folder that does not exist is reported like missing weights.
"""

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from synth import result_from_npz

from blender_stchain.contracts.errors import WeightsError
from blender_stchain.contracts.job import JobSpec


def emit(**event):
    print(json.dumps(event), flush=True)


def check(spec: JobSpec) -> None:
    """The stand-in for the worker's ``--check``: a weights folder that does not exist is missing weights."""
    if spec.weights and not Path(spec.weights).is_dir():
        raise WeightsError(f"weights folder {spec.weights} is missing: run 'python -m blender_stchain weights download'")


def main(job_path: str) -> int:
    if job_path == "--check":
        check(JobSpec.load(sys.argv[2]))
        emit(event="done", result="")
        return 0
    spec = JobSpec.load(job_path)
    mode = os.environ.get("STUB_MODE", "ok")
    cancel = Path(job_path + ".cancel")
    check(spec)
    numbers, size = _footage(spec)
    steps = 10_000 if mode in ("hang", "deaf") else 4
    for i in range(steps):
        if cancel.exists() and mode != "deaf":
            emit(event="error", message="cancelled by the user")
            return 3
        emit(event="progress", stage=["anchor", "chain", "deform", "camera"][i % 4], fraction=i / 4,
             message=f"step {i + 1}", eta_s=None if i == 0 else 0.05 * (4 - i))
        if mode == "crash" and i == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "raise" and i == 2:
            raise RuntimeError("CUDA out of memory (stand-in)")
        time.sleep(0.05)
    emit(event="warning", message="stand-in worker: synthetic result")
    if mode == "nocamera":  # what the camera stage says when it refuses the solve
        emit(event="warning", message="camera not estimated (the matches carry no depth); using a default front "
                                      "camera")
    result = result_from_npz(Path(os.environ["STUB_NPZ"]), frames=len(numbers), first_frame=numbers[0], size=size, tracks=0)
    result.metadata["job"] = json.loads(spec.to_json())
    result.metadata["engine_file"] = sys.modules[JobSpec.__module__].__file__
    result.save(spec.out)
    emit(event="done", result=spec.out)
    return 0


def _footage(spec):
    """Frame numbers and size from a Blender frames folder (meta.json), else the job's range."""
    meta = Path(spec.footage) / "meta.json"
    if meta.is_file():
        numbers = json.loads(meta.read_text())["frame_numbers"]
        h, w = np.load(Path(spec.footage) / "frames" / f"{numbers[0]:06d}.npy").shape[:2]
        return numbers, (w, h)
    a, b = spec.frames or (1, 16)
    return list(range(a, b + 1)), (640, 480)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as e:  # the protocol's error event, like the real worker
        traceback.print_exc()
        emit(event="error", message=str(e))
        sys.exit(2)
