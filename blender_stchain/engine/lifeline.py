"""The worker's lifeline to the process that started it (Blender).

When Blender dies or is killed mid-job nobody will read the result, and a worker left running holds
the GPU and its files. Two signs, checked ten times a second: the parent process changed (POSIX
re-parents an orphan) and, when the runner asked for it (``STCHAIN_WATCH_STDIN=1``), the stdin pipe
Blender holds open reached its end (the one sign Windows gives). Either one stops the job at once:
unfinished results are dropped, the job folder Blender made for it is removed, and the process
exits, which frees the device.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

WATCH_STDIN = "STCHAIN_WATCH_STDIN"
OWNER = "owner.pid"  # written by the Blender side into each job folder (bl.runner.new_job_dir)
POLL_S = 0.1
GRACE_S = 0.3  # the pipeline may stop by itself this long; nobody waits for its last event


class Lifeline:
    def __init__(self, job_path, on_gone, exit_code: int):
        self.job_path = Path(job_path)
        self.parent = os.getppid()
        self.on_gone = on_gone  # tell the pipeline to stop (the job's cancel flag)
        self.exit_code = exit_code
        self.gone = threading.Event()
        self.finished = threading.Event()

    def start(self) -> "Lifeline":
        threading.Thread(target=self._poll, daemon=True).start()
        if os.environ.get(WATCH_STDIN) == "1":
            threading.Thread(target=self._read_stdin, daemon=True).start()
        return self

    def _poll(self) -> None:
        while not self.gone.wait(POLL_S) and not self.finished.is_set():  # the job's end ends the watch
            if os.name != "nt" and os.getppid() != self.parent:
                self._stop()

    def _read_stdin(self) -> None:
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError, AttributeError):
            pass
        self._stop()

    def _stop(self) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        self.on_gone()
        if not self.finished.wait(GRACE_S):
            from ..contracts.result import abort_all

            abort_all()
            self.clean()
            os._exit(self.exit_code)

    def done(self) -> None:
        """The job returned (finished, failed or stopped): after a lost parent, tidy up."""
        self.finished.set()
        if self.gone.is_set():
            self.clean()

    def clean(self) -> None:
        """Remove the job folder Blender made for this job (``job-*`` owned by the dead parent); a
        job file anywhere else (the command line, tests) is left alone."""
        folder = self.job_path.parent
        try:
            mine = folder.name.startswith("job-") and (folder / OWNER).read_text().strip() == str(self.parent)
        except OSError:
            mine = False
        if mine:
            shutil.rmtree(folder, ignore_errors=True)


def guard(job_path, cancel, exit_code: int = 2) -> Lifeline:
    """The started lifeline of one job: a lost parent raises the job's cancel flag (``FileCancel``)."""
    return Lifeline(job_path, lambda: setattr(cancel, "flag", True), exit_code).start()
