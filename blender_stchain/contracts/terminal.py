"""What a person at a terminal sees: one progress bar line (stage, counts, ETA) and warnings on their
own lines; JSON lines instead with ``--json`` or when stdout is not a terminal (scripts, the operator).
``quiet_stdout`` silences Blender's own per-frame lines (``render | Saved: ...``) while it decodes."""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager

from .events import Event, Progress, from_dict


def format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def bar_line(p: Progress, width: int = 24) -> str:
    filled = int(round(p.fraction * width))
    eta = f", {format_eta(p.eta_s)} left" if p.eta_s is not None else ", estimating time left"
    text = f"[{'#' * filled}{'.' * (width - filled)}] {p.fraction * 100:3.0f}% {p.stage}"
    return text + (f": {p.message}" if p.message else "") + eta


class Printer:
    """An event sink for ``run``, the demo and the headless Blender paths."""

    def __init__(self, json_lines: bool | None = None, stream=None, prefix: str = ""):
        self.stream = stream or sys.stdout
        self.json = json_lines if json_lines is not None else not _is_tty(self.stream)
        self.prefix = prefix
        self._open_bar = False

    def __call__(self, event) -> None:
        event = event if isinstance(event, Event) else from_dict(event)
        if self.json:
            self.stream.write(event.to_json() + "\n")
        elif isinstance(event, Progress):
            self.stream.write(f"\r\033[K{self.prefix}{bar_line(event)}")
            self._open_bar = True
        else:
            self._end_bar()
            text = event.get("message") or event.get("result") or ""
            label = {"done": "result", "log": ""}.get(event.kind, event.kind)
            self.stream.write(f"{self.prefix}{label + ': ' if label else ''}{text}\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        """A plain line for a person (JSON mode: a ``log`` event)."""
        from .events import Log

        self(Log(text))

    def _end_bar(self) -> None:
        if self._open_bar:
            self.stream.write("\n")
            self._open_bar = False


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _flush_c_stdout() -> None:
    try:
        libc = ctypes.CDLL(None) if os.name != "nt" else ctypes.cdll.msvcrt
        libc.fflush(None)
    except (OSError, AttributeError):
        pass


@contextmanager
def quiet_stdout():
    """Point file descriptor 1 at the null device for the block (C and Python output alike)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real stdout (some GUI launches): nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
