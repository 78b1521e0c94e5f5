"""Worker process entry: ``python -m blender_stchain.engine.worker JOB.json``.

Runs one job and speaks JSON lines on stdout (see ``events``). Exit codes: 0 done, 1 a user-facing
error (one clear line), 2 cancelled, 3 an internal error (traceback on stderr). Cancel: the file
``JOB.json.cancel`` appears, or SIGTERM/SIGINT arrives. Nothing from the job file is executed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback

from ..contracts.errors import Cancelled, StchainError, out_of_memory
from ..contracts.events import FileCancel


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


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
            sink({"event": "error", "message": "cancelled by the user", "cancelled": True})
            os._exit(2)


def run_job_file(job_path: str, sink=emit) -> int:
    cancel = FileCancel(job_path + ".cancel")
    finished = threading.Event()
    threading.Thread(target=watchdog, args=(cancel, finished, sink), daemon=True).start()
    try:
        return _run(job_path, cancel, sink)
    finally:
        finished.set()


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
        sink({"event": "error", "message": str(e), "cancelled": True})
        return 2
    except StchainError as e:
        sink({"event": "error", "message": str(e)})
        return 1
    except OSError as e:
        sink({"event": "error", "message": f"could not read or write a file ({e.strerror or e}: "
                                           f"{e.filename or 'the result'}); is the disk full?"})
        return 1
    except Exception as e:  # noqa: BLE001 - the worker must always answer with one line
        if out_of_memory(e):
            sink({"event": "error", "message": "out of memory: lower the face budget, the grid resolutions or "
                                               "the window size"})
            return 1
        traceback.print_exc(file=sys.stderr)
        sink({"event": "error", "message": f"internal error: {type(e).__name__}: {e}"})
        return 3
    sink({"event": "done", "result": str(result)})
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m blender_stchain.engine.worker JOB.json\n")
        return 1
    return run_job_file(argv[0])


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter teardown (seconds with torch loaded, under load): a cancel ends at once
