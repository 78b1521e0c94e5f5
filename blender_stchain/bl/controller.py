"""The non-blocking job logic behind the modal operator, as a plain object (no bpy).

The operator's timer calls ``poll()``; the panel reads ``state``, ``progress`` and ``status_line()``;
Esc / the Cancel button call ``cancel()``. When ``state`` becomes DONE the operator applies
``result_path`` with the scene writer; on FAILED or CANCELLED it only reports ``message``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

from ..contracts.terminal import format_eta


class State(str, Enum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED = (State.DONE, State.FAILED, State.CANCELLED)


@dataclass
class Progress:
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    eta_s: float | None = None


@dataclass
class Controller:
    """Drives one runner (``start``/``events``/``cancel``/``alive``) without ever blocking."""

    clock: object = time.monotonic
    state: State = State.IDLE
    progress: Progress = field(default_factory=Progress)
    warnings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # plain output lines (last 50)
    message: str = ""
    result_path: str | None = None
    runner: object = None
    _started: float = 0.0

    def start(self, runner) -> None:
        if self.state in (State.RUNNING, State.CANCELLING):
            raise RuntimeError("a job is already running")
        self.runner = runner
        self.state, self.progress, self.warnings, self.log = State.RUNNING, Progress(), [], []
        self.message, self.result_path = "", None
        self._started = self.clock()
        runner.start()

    def poll(self) -> list[dict]:
        """Drain pending events and update the state; returns them (for logging)."""
        if self.runner is None or self.state in FINISHED:
            return []
        events = self.runner.events()
        for event in events:
            self.handle(event)
        return events

    def cancel(self) -> None:
        if self.state == State.RUNNING:
            self.state = State.CANCELLING
            self.runner.cancel()

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def eta_s(self) -> float | None:
        """The worker's estimate, else elapsed time scaled by the remaining fraction."""
        p = self.progress
        if p.eta_s is not None:
            return max(0.0, float(p.eta_s))
        if p.fraction <= 0.02:
            return None
        elapsed = self.clock() - self._started
        return elapsed * (1.0 - p.fraction) / p.fraction

    def status_line(self) -> str:
        if self.state in (State.RUNNING, State.CANCELLING):
            p = self.progress
            text = f"{p.stage or 'starting'} {p.fraction * 100:.0f}%"
            if p.message:
                text += f" - {p.message}"
            eta = self.eta_s()
            if eta is not None:
                text += f" ({format_eta(eta)} left)"
            return ("Cancelling: " if self.state == State.CANCELLING else "") + text
        return self.message

    def handle(self, event: dict) -> None:
        """Fold one event into the state (``poll`` calls this; blocking drivers may too)."""
        kind = event.get("event")
        if kind == "progress":
            self.progress = Progress(
                stage=str(event.get("stage", "")),
                fraction=min(1.0, max(0.0, float(event.get("fraction") or 0.0))),
                message=str(event.get("message", "")),
                eta_s=event.get("eta_s"),
            )
        elif kind == "log":
            self.log = (self.log + [str(event.get("message", ""))])[-50:]
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
        elif kind == "done":
            self.state, self.result_path = State.DONE, str(event["result"])
            self.message = "4D mesh generated"
        elif kind == "error":
            self.state, self.message = State.FAILED, str(event.get("message") or "the job failed")
        elif kind == "cancelled":
            self.state, self.message = State.CANCELLED, "Cancelled; the scene was not changed"

