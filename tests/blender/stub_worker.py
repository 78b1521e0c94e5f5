"""A stand-in worker process speaking the real protocol (until engine/worker.py lands).

Run as ``python -m stub_worker JOB.json`` (tests put this folder on PYTHONPATH). It validates the
job with the real JobSpec, streams progress, honours the cancel file, and writes a real Result
made from the animated GLB npz named by ``STUB_NPZ``. ``STUB_MODE`` picks a failure:
``ok`` (default), ``raise`` (an exception), ``crash`` (SIGKILL itself mid-run), ``hang`` (runs
until cancelled). A ``weights`` folder that does not exist is reported like missing weights.
"""

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from blender_stchain.engine.job import JobSpec
from blender_stchain.engine.errors import WeightsError
from synth import result_from_npz


def emit(**event):
    print(json.dumps(event), flush=True)


def main(job_path: str) -> int:
    spec = JobSpec.load(job_path)
    mode = os.environ.get("STUB_MODE", "ok")
    cancel = Path(job_path + ".cancel")
    if spec.weights and not Path(spec.weights).is_dir():
        raise WeightsError(f"weights folder {spec.weights} is missing: run 'python -m blender_stchain weights download'")
    frames = _frame_count(spec)
    steps = 10_000 if mode == "hang" else 4
    for i in range(steps):
        if cancel.exists():
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
    first = spec.frames[0] if spec.frames else 1
    result = result_from_npz(Path(os.environ["STUB_NPZ"]), frames=frames, first_frame=first, tracks=0)
    result.metadata["job"] = json.loads(spec.to_json())
    result.save(spec.out)
    emit(event="done", result=spec.out)
    return 0


def _frame_count(spec) -> int:
    meta = Path(spec.footage) / "meta.json"
    if meta.is_file():
        return len(json.loads(meta.read_text())["frame_numbers"])
    return spec.frames[1] - spec.frames[0] + 1 if spec.frames else 16


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as e:  # the protocol's error event, like the real worker
        traceback.print_exc()
        emit(event="error", message=str(e))
        sys.exit(2)
