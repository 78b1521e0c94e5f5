"""The clip worker a Ray actor wraps: weights loaded once, then clip after clip through ``pipeline.run``.

Plain Python (no Ray here), so it is tested in-process. The actor runs with two threads: ``run`` in
one, ``poll`` (events so far) and ``cancel`` in the other, so the driver sees progress and can stop a
clip between steps; the pipeline then drops its partial files itself.

Where results go: when the batch folder is shared with the driver (the driver's marker file is
readable here), the result is made in this node's own folder inside it and renamed into place when
complete; otherwise it is made in a node-local temporary folder and its bytes travel back through the
object store for the driver to write.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from pathlib import Path

from ..cli_export import export_in_child
from ..contracts.errors import Cancelled, StchainError, out_of_memory
from .blend import write_blend

PROGRESS_STEP = 0.05  # progress events kept for the log: a new stage, or this much further


class ClipWorker:
    def __init__(self, threads: int = 1, marker: str | None = None, token: str | None = None):
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported (first clip)
        self.threads = threads
        self.shared = bool(marker) and _reads(marker) == token
        self._backbones: dict[tuple, object] = {}
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._events: list[dict] = []
        self._last: tuple[str, float] = ("", -1.0)
        self._clip = ""

    def info(self) -> dict:
        import socket

        return {"pid": os.getpid(), "node": socket.gethostname(), "shared": self.shared}

    def cancel(self) -> None:
        self._cancel.set()

    def poll(self) -> list[dict]:
        """Events since the last poll (progress thinned to stage changes and 5% steps)."""
        with self._lock:
            out, self._events = self._events, []
        return out

    def backbone(self, *args):
        """``load_backbone`` kept for the next clip: loaded again only when the weights, device, precision
        or method change (one set held at a time: two would double the worker's memory)."""
        if args not in self._backbones:
            from ..engine.backbone import load_backbone

            self._backbones.clear()
            self._backbones[args] = load_backbone(*args)
        return self._backbones[args]

    def run(self, clip: dict) -> dict:
        """Run one clip; always answers with an outcome dict (status done/failed/cancelled)."""
        self._clip, self._last = clip["name"], ("", -1.0)
        t0 = time.perf_counter()
        final = Path(clip["spec"]["out"])
        work = final.parent / node_folder() if self.shared else _local_folder()
        try:
            outcome = self._run(clip, final, work)
        finally:
            if not self.shared:
                shutil.rmtree(work, ignore_errors=True)
        outcome.update(name=clip["name"], seconds=round(time.perf_counter() - t0, 3), **self.info())
        return outcome  # the driver logs the outcome; the events before it are polled first

    def _run(self, clip: dict, final: Path, work: Path) -> dict:
        """Results are made in ``work`` (this node's own folder) and renamed into place when complete:
        a writer's clean-up of dead writers' files (by pid) then never meets another node's files."""
        from ..contracts.job import JobSpec
        from ..engine.pipeline import run

        import torch

        torch.set_num_threads(self.threads)
        out = work / final.name
        placed = False
        try:
            run(JobSpec(**{**clip["spec"], "out": str(out)}), on_event=self._event, cancel=self._cancel.is_set,
                backbones=self.backbone)
            if not self.shared:  # the driver writes the result (and its .blend)
                return {"status": "done", "payload": {"result": out.read_bytes()}}
            os.replace(out, final)
            placed = True
            if clip.get("blend"):
                write_blend(final, final.with_suffix(".blend"), self._cancel.is_set)
            if clip.get("export"):
                export_in_child(final, clip["export"], self._cancel.is_set)
        except BaseException as e:
            for p in (out, final if placed else None):
                if p is not None:
                    p.unlink(missing_ok=True)  # a clip that did not finish leaves no file
            if isinstance(e, Exception):
                if not isinstance(e, (StchainError, OSError)):
                    self._event({"event": "traceback", "message": traceback.format_exc()})
                return {"status": "cancelled" if isinstance(e, Cancelled) else "failed", "message": failure(e)}
            raise
        return {"status": "done"}

    def _event(self, event: dict) -> None:
        if event.get("event") == "progress":
            stage, frac = event.get("stage", ""), float(event.get("fraction") or 0.0)
            last_stage, last_frac = self._last
            if stage == last_stage and frac - last_frac < PROGRESS_STEP and frac < 1.0:
                return
            self._last = (stage, frac)
        with self._lock:
            self._events.append({"clip": self._clip, "t": round(time.time(), 3), **event})


def failure(e: Exception) -> str:
    """The one line a clip's failure is recorded with (the same wording as the worker process)."""
    if isinstance(e, StchainError):
        return str(e)
    if isinstance(e, OSError):
        return f"could not read or write a file ({e.strerror or e}: {e.filename or 'the result'}); is the disk full?"
    if out_of_memory(e):
        return ("out of memory even after the retry with smaller chunks: lower the face budget, the grid "
                "resolutions or the window size")
    return f"internal error: {type(e).__name__}: {e}"


def node_folder() -> str:
    """This node's working folder inside a shared batch folder (removed by the driver at the end)."""
    import socket

    return ".stchain-node-" + re.sub(r"[^A-Za-z0-9.-]+", "_", socket.gethostname())


def _local_folder() -> Path:
    """A node-local folder for one clip; folders of workers that died (killed) are swept first."""
    root = Path(tempfile.gettempdir()) / "stchain-batch"
    root.mkdir(exist_ok=True)
    for p in root.iterdir():
        pid = p.name.split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _reads(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
