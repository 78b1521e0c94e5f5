"""Job runners: the worker process (default) and a thread (tests), and the job folders they run in
(removed on every exit path; see the last section). No bpy, no torch here.

Both speak the worker's JSON-lines protocol (``contracts.events``, typed records that read as dicts):
``{"event": "progress", "stage", "fraction", "message", "eta_s"}``, ``{"event": "warning", "message"}``,
``{"event": "done", "result": PATH}``, ``{"event": "error", "message"}``; the runner adds a final
``{"event": "cancelled"}`` after a cancel, and turns a worker that dies without a final event into
an ``error`` naming the exit code. ``events()`` never blocks (the UI timer drains it); ``wait()``
blocks (headless).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from ..contracts.events import FINAL, from_json

WORKER_MODULE = "blender_stchain.engine.worker"


def cancel_path(job_path) -> Path:
    """The file the worker polls: its presence means 'stop now, write nothing'."""
    return Path(str(job_path) + ".cancel")


class _Base:
    """Event queue, final-event bookkeeping and the blocking ``wait`` shared by both runners."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._cancel_requested = False
        self.final: dict | None = None

    def events(self) -> list[dict]:
        out = []
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return out
            out.append(event)
            if event.get("event") in FINAL:
                self.final = event
                return out

    def wait(self, on_event=None) -> dict:
        """Block until the final event; ``on_event`` sees every event on the calling thread."""
        while self.final is None:
            try:
                event = self._queue.get(timeout=0.2)  # short waits keep Ctrl+C responsive
            except queue.Empty:
                continue
            if on_event is not None:
                on_event(event)
            if event.get("event") in FINAL:
                self.final = event
        return self.final

    def _finish(self, final: dict | None):
        """Emit the last event: a cancel wins over anything but a finished result file."""
        if self._cancel_requested:
            final = {"event": "cancelled", "message": "cancelled by the user"}
        elif final is None:
            final = {"event": "error", "message": "the worker stopped without a result"}
        self._queue.put(final)


def worker_args(job_path, module: str = WORKER_MODULE, check: bool = False) -> list[str]:
    return ["-m", module, *(["--check"] if check else []), str(job_path)]


def check_job(job_path, module: str = WORKER_MODULE, *, python=None, pythonpath=()) -> None:
    """Ask the worker whether the job can run (settings, weights; no torch, no footage): raises
    StchainError with its one line when not. Blender runs this before it decodes a frame."""
    from ..contracts.errors import StchainError

    probe = ProcessRunner(worker_args(job_path, module, check=True), python=python, pythonpath=pythonpath)
    final = probe.start().wait()
    if final.get("event") != "done":
        raise StchainError(final.get("message") or "the job cannot run")


class ProcessRunner(_Base):
    """Runs ``python ARGS`` (the worker: ``-m MODULE JOB.json``) and streams its JSON lines.

    Commands that print plain text (the weights tool) work too: lines become ``log`` events and
    exit code 0 without a final event counts as ``done``.
    """

    def __init__(self, args, *, cancel_file=None, python: str | None = None, pythonpath=(),
                 env: dict | None = None, grace_s: float = 5.0):
        super().__init__()
        self.cancel_file = Path(cancel_file) if cancel_file else None
        self.command = [python or sys.executable, *map(str, args)]
        self.env = dict(os.environ if env is None else env)
        paths = [str(p) for p in pythonpath] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.env["STCHAIN_WATCH_STDIN"] = "1"  # the worker stops when this pipe closes (Blender gone)
        self.grace_s = grace_s
        self.proc: subprocess.Popen | None = None
        self._stderr: deque[str] = deque(maxlen=20)

    def start(self) -> "ProcessRunner":
        if self.cancel_file:
            self.cancel_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,  # never written
            env=self.env, text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cancel(self) -> None:
        """Ask politely (cancel file), then SIGTERM after ``grace_s``, then SIGKILL."""
        if self._cancel_requested or self.proc is None:
            return
        self._cancel_requested = True
        if self.cancel_file:
            self.cancel_file.touch()
        threading.Thread(target=self._escalate, daemon=True).start()

    def _escalate(self):
        for stop, wait in ((self.proc.terminate, self.grace_s), (self.proc.kill, 2.0)):
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                stop()

    def _read_stderr(self):
        for line in self.proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())

    def _read_stdout(self):
        final = None
        for line in self.proc.stdout:
            event = _parse(line)
            if event is None:
                continue
            if event.get("event") in FINAL:
                final = event
            else:
                self._queue.put(event)
        code = self.proc.wait()
        if final is None and code == 0:
            final = {"event": "done", "result": ""}
        elif final is None and not self._cancel_requested:
            final = {"event": "error", "message": self._crash_message(code)}
        elif final is not None and final.get("event") == "done" and code != 0:
            final = {"event": "error", "message": f"the worker reported a result but exited with code {code}"}
        self._finish(final)

    def _crash_message(self, code: int) -> str:
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            why = "killed (out of memory?)" if name == "SIGKILL" else f"stopped by {name}"
            return f"the worker was {why}; nothing was written"
        last = self._stderr[-1] if self._stderr else "no message"
        if last.startswith("error: "):  # a user-facing line (contracts.options.one_line): it says it all
            return last[len("error: "):]
        return f"the worker failed (exit code {code}): {last}"


class Threaded(_Base):
    """A runner whose work is ``self._run`` on a daemon thread (events go through ``self._queue``)."""

    _thread: threading.Thread | None = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self):
        raise NotImplementedError


class ThreadRunner(Threaded):
    """Runs ``fn(job_path, emit, cancelled)`` in a thread with the same interface.

    ``fn`` emits event dicts and returns a result path (-> ``done``) or raises (-> ``error``).
    """

    def __init__(self, job_path, fn):
        super().__init__()
        self.job_path = Path(job_path)
        self.fn = fn
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel_requested = True
        self._cancel.set()

    def _run(self):
        try:
            path = self.fn(self.job_path, self._queue.put, self._cancel.is_set)
            final = {"event": "done", "result": str(path)}
        except Exception as e:  # the user reads the message; the scene is never touched here
            final = {"event": "error", "message": str(e) or type(e).__name__}
        self._finish(final)


def _parse(line: str):
    """One stdout line -> a typed event (``contracts.events``); plain text becomes a ``log`` event."""
    return from_json(line)


# --------------------------------------------------------------------------- job folders
# Where a job's files live and that none is left behind.
#
# A job folder (``job-*`` in the extension's user folder) holds the exported frames, job.json and the
# worker's result while the job runs; it is removed on every exit path (done, failed, cancelled, a
# refused start). The result is moved next to the .blend (or the headless ``--out``) first, so the
# scene references a file that stays. Folders whose Blender is gone (a crash) are removed at the next start.

OWNER = "owner.pid"
RESULT_SUFFIX = "_4dmesh.safetensors"


def new_job_dir(root: Path) -> Path:
    clean_stale(root)
    path = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    (path / OWNER).write_text(str(os.getpid()))
    return path


def clean_stale(root: Path, min_age_s: float = 86400.0) -> list[Path]:
    """Remove job folders whose owning Blender is no longer running (or that name none and are a day old)."""
    removed = []
    for folder in Path(root).glob("job-*"):
        if folder.is_dir() and _stale(folder, min_age_s):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _stale(folder: Path, min_age_s: float) -> bool:
    try:
        pid = int((folder / OWNER).read_text())
    except (OSError, ValueError):
        try:
            return time.time() - folder.stat().st_mtime > min_age_s
        except OSError:
            return False
    return pid != os.getpid() and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


def remove_job_dir(job_dir: Path | None) -> None:
    if job_dir is not None:
        shutil.rmtree(job_dir, ignore_errors=True)


def result_destination(blend_path: str | os.PathLike | None, fallback_dir: Path) -> Path:
    """``NAME_4dmesh.safetensors`` beside the .blend; for an unsaved file, in ``fallback_dir``."""
    if blend_path:
        blend = Path(blend_path)
        return blend.with_name(blend.stem + RESULT_SUFFIX)
    fallback_dir.mkdir(parents=True, exist_ok=True)
    return fallback_dir / f"untitled-{time.strftime('%Y%m%d-%H%M%S')}{RESULT_SUFFIX}"


def keep_result(produced: str | os.PathLike, dest: Path) -> Path:
    """Move the worker's result out of the job folder to ``dest`` (replacing an older one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(produced), str(dest))
    return dest
