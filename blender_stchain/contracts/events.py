"""Progress events, stage weighting with an ETA, and cancellation.

Events are plain dicts so they cross the process boundary as JSON lines unchanged:
``{"event": "progress", "stage", "fraction", "message", "eta_s"}``, ``{"event": "warning", "message"}``,
``{"event": "done", "result"}``, ``{"event": "error", "message"}``.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from .errors import Cancelled

EventSink = Callable[[dict], None]


def no_cancel() -> bool:
    return False


class FileCancel:
    """Cancelled once ``path`` exists (Blender creates ``JOB.json.cancel``) or a signal arrived."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = path
        self.flag = False

    def __call__(self) -> bool:
        return self.flag or (self.path is not None and os.path.exists(self.path))


class Reporter:
    """Maps per-stage progress onto one overall fraction with an ETA and checks for cancel.

    ``plan`` gives each stage a relative cost; stages run in order. The ETA extrapolates the time
    spent so far over the overall fraction (honest once a few steps have run).
    """

    def __init__(self, sink: EventSink | None, cancel: Callable[[], bool] | None, plan: dict[str, float]):
        self.sink = sink or (lambda e: None)
        self.cancel = cancel or no_cancel
        total = sum(plan.values()) or 1.0
        self.offsets, acc = {}, 0.0
        for stage, cost in plan.items():
            self.offsets[stage] = (acc / total, cost / total)
            acc += cost
        self.start = time.monotonic()
        self.fraction = 0.0

    def check(self) -> None:
        if self.cancel():
            raise Cancelled()

    def progress(self, stage: str, done: float, total: float = 1.0, message: str = "") -> None:
        """Report ``done/total`` of ``stage`` and raise Cancelled if the user asked to stop."""
        base, span = self.offsets.get(stage, (self.fraction, 0.0))
        frac = min(1.0, max(self.fraction, base + span * (done / total if total else 1.0)))
        self.fraction = frac
        elapsed = time.monotonic() - self.start
        eta = elapsed * (1.0 - frac) / frac if frac > 0.02 else None
        self.sink({"event": "progress", "stage": stage, "fraction": round(frac, 4), "message": message,
                   "eta_s": None if eta is None else round(eta, 1)})
        self.check()

    def warning(self, message: str) -> None:
        self.sink({"event": "warning", "message": message})
