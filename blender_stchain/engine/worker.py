"""Worker process entry: ``python -m blender_stchain.engine.worker [--check] JOB.json``.

Runs one job and speaks the event protocol on stdout (``contracts.events``: one JSON line per typed
record). Exit codes (``contracts.errors``): 0 done, 1 a user-facing error (one clear line), 2 cancelled,
3 an internal error (traceback on stderr). ``--check`` only validates the job and the weights (headers,
no torch, no footage): Blender runs it before it decodes a frame. Cancel: the file ``JOB.json.cancel``
appears, or SIGTERM/SIGINT arrives. Nothing from the job file is executed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

# before torch is imported (the pipeline imports it): an operation MPS lacks runs on the CPU, not a crash
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from ..contracts.errors import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_OK,
    Cancelled,
    StchainError,
    device_failure,
    out_of_memory,
)
from ..contracts.errors import FileCancel
from ..contracts.events import Done, Error, from_dict


def emit(event) -> None:
    """Write one event (a record or a wire dict) as one protocol line."""
    try:
        sys.stdout.write(from_dict(event).to_json() + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass  # the reader is gone (Blender killed): the lifeline stops the job


CANCEL_GRACE_S = 1.2  # a cancel that the pipeline has not honoured by then is enforced


def watchdog(cancel, finished: threading.Event, sink) -> None:
    """Enforce a cancel within ``CANCEL_GRACE_S`` even while the main thread is busy in one long step
    (importing torch, a surface extraction): drop unfinished results and leave at once."""
    while not finished.wait(0.1):
        if cancel():
            if finished.wait(CANCEL_GRACE_S):
                return
            from ..contracts.result import abort_all

            abort_all()
            sink(Error("cancelled by the user", cancelled=True))
            os._exit(EXIT_CANCELLED)


def run_job_file(job_path: str, sink=emit) -> int:
    from .lifeline import guard

    cancel = FileCancel(job_path + ".cancel")
    finished = threading.Event()
    lifeline = guard(job_path, cancel, EXIT_CANCELLED)  # Blender gone: stop, free the device, leave nothing
    threading.Thread(target=watchdog, args=(cancel, finished, sink), daemon=True).start()
    try:
        return _run(job_path, cancel, sink)
    finally:
        finished.set()
        lifeline.done()


def _run(job_path: str, cancel: FileCancel, sink) -> int:
    from ..contracts.job import JobSpec

    def on_signal(signum, frame):
        cancel.flag = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        job = JobSpec.load(job_path)
        from .pipeline import run

        result = run(job, on_event=sink, cancel=cancel)
    except Cancelled as e:
        sink(Error(str(e), cancelled=True))
        return EXIT_CANCELLED
    except StchainError as e:
        sink(Error(str(e)))
        return EXIT_ERROR
    except OSError as e:
        sink(Error(f"could not read or write a file ({e.strerror or e}: {e.filename or 'the result'}); "
                   "is the disk full?"))
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - the worker must always answer with one line
        if out_of_memory(e):
            sink(Error("out of memory: lower the face budget, the grid resolutions or the window size"))
            return EXIT_ERROR
        known = device_failure(e)
        if known is not None:
            sink(Error(str(known)))
            return EXIT_ERROR
        traceback.print_exc(file=sys.stderr)
        sink(Error(f"internal error: {type(e).__name__}: {e}"))
        return EXIT_INTERNAL
    sink(Done(str(result)))
    return EXIT_OK


def check_job_file(job_path: str, sink=emit) -> int:
    """Validate the job and its weights only (no torch, no footage): 0 and a ``done`` event, or 1 and the line."""
    from ..contracts.job import JobSpec
    from .weights.preflight import require

    try:
        job = JobSpec.load(job_path)
        root = require(job.weights, job.method, job.allow_random_weights)
    except StchainError as e:
        sink(Error(str(e)))
        return EXIT_ERROR
    sink(Done(str(root)))
    return EXIT_OK


def main(argv=None) -> int:
    from ..runtime.store import enter

    enter()  # an installed GPU runtime on sys.path: its DLL folders too (Windows)
    argv = list(sys.argv[1:] if argv is None else argv)
    check = argv[:1] == ["--check"]
    if check:
        argv = argv[1:]
    if len(argv) != 1:
        sys.stderr.write("error: usage: python -m blender_stchain.engine.worker [--check] JOB.json\n")
        return EXIT_ERROR
    return check_job_file(argv[0]) if check else run_job_file(argv[0])


if __name__ == "__main__":
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    os._exit(code)  # skip the interpreter teardown (seconds with torch loaded, under load): a cancel ends at once
