"""Segmentation worker: ``python -m blender_stchain.engine.segment.worker JOB.json`` (Blender's "Preview masks").

The job is plain JSON, validated here, nothing in it executed::

    {"footage": PATH, "out": MASK_DIR, "frames": [a, b] | null, "weights": ROOT | null, "model": SIZE | null,
     "device": "auto", "points": [[x, y, positive, frame | null], ...], "boxes": [[x0, y0, x1, y1, frame | null], ...],
     "overlay": DIR | null}   (overlay: each frame under its mask, for the preview)

Speaks the same JSON lines and exit codes as the pipeline worker (``engine.worker``); cancel is the file
``JOB.json.cancel`` or SIGTERM, honoured within one backbone block.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback

from ...contracts.errors import Cancelled, JobError, StchainError
from ...contracts.errors import FileCancel
from ...contracts.prompts import Box, Point, Prompts
from ...runtime.store import enter
from ..lifeline import guard
from ..worker import emit, watchdog

FIELDS = {"footage", "out", "frames", "weights", "model", "device", "points", "boxes", "overlay", "allow_random_weights"}


def read_job(path: str) -> dict:
    try:
        job = json.loads(open(path, encoding="utf-8").read())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JobError(f"segmentation job {path} cannot be read: {e}") from None
    if not isinstance(job, dict) or not {"footage", "out"} <= set(job) or set(job) - FIELDS:
        raise JobError(f"segmentation job {path}: needs footage and out, and only {', '.join(sorted(FIELDS))}")
    return job


def prompts_of(job: dict) -> Prompts:
    try:
        points = tuple(Point(float(x), float(y), bool(pos), None if f is None else int(f))
                       for x, y, pos, f in job.get("points") or ())
        boxes = tuple(Box(float(a), float(b), float(c), float(d), None if f is None else int(f))
                      for a, b, c, d, f in job.get("boxes") or ())
    except (TypeError, ValueError):
        raise JobError("segmentation job: points are [x, y, positive, frame], boxes [x0, y0, x1, y1, frame]") from None
    return Prompts(points, boxes)


def run_job_file(path: str, sink=emit) -> int:
    cancel = FileCancel(path + ".cancel")
    finished = threading.Event()
    lifeline = guard(path, cancel)  # Blender gone: stop, free the device, leave nothing
    threading.Thread(target=watchdog, args=(cancel, finished, sink), daemon=True).start()

    def on_signal(signum, frame):
        cancel.flag = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, on_signal)
        except ValueError:
            pass
    try:
        from .run import segment_footage

        job = read_job(path)
        frames = tuple(job["frames"]) if job.get("frames") else None
        summary = segment_footage(job["footage"], prompts_of(job), job["out"], frames, job.get("weights"),
                                  job.get("model"), job.get("device") or "auto", sink, cancel,
                                  overlay=job.get("overlay"), allow_random=job.get("allow_random_weights", False))
    except Cancelled as e:
        sink({"event": "error", "message": str(e), "cancelled": True})
        return 2
    except StchainError as e:
        sink({"event": "error", "message": str(e)})
        return 1
    except OSError as e:
        sink({"event": "error", "message": f"could not read or write a file ({e.strerror or e}: {e.filename})"})
        return 1
    except Exception as e:  # noqa: BLE001 - the worker always answers with one line
        traceback.print_exc(file=sys.stderr)
        sink({"event": "error", "message": f"internal error: {type(e).__name__}: {e}"})
        return 3
    finally:
        finished.set()
        lifeline.done()
    sink({"event": "done", "result": str(summary.folder)})
    return 0


def main(argv=None) -> int:
    enter()  # an installed GPU runtime on sys.path: its DLL folders too (Windows)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m blender_stchain.engine.segment.worker JOB.json\n")
        return 1
    return run_job_file(argv[0])


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written: skip the interpreter's teardown of torch (seconds on a busy CPU)
