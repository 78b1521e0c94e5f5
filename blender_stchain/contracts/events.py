"""Progress events as typed records, the stage-weighted progress with an honest ETA, and cancellation.

Every entry point speaks one protocol: one JSON object per line whose ``"event"`` key names the kind
(``PROTOCOL_KEY``)::

    {"event": "progress", "stage", "fraction", "message", "eta_s", "done", "total"}
    {"event": "warning", "message"}      {"event": "log", "message"}
    {"event": "done", "result"}          {"event": "error", "message", "cancelled"}
    {"event": "cancelled", "message"}

Records read like the wire dict too (``event["stage"]``, ``event.get("message")``) so sinks written
for plain dicts keep working.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar

from .costs import CostModel
from .errors import Cancelled as CancelledError

PROTOCOL_KEY = "event"


class Event(Mapping):
    """Base of the records: wire form, and read-only mapping access to it (``event["stage"]``,
    ``event.get(...)``, ``{**event}``) so code written for the wire dicts keeps working."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {PROTOCOL_KEY: self.kind, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self):
        return len(self.to_dict())


@dataclass
class Progress(Event):
    kind: ClassVar[str] = "progress"
    stage: str
    fraction: float
    message: str = ""
    eta_s: float | None = None
    done: float | None = None  # steps of this stage done / total (the terminal bar shows them)
    total: float | None = None


@dataclass
class Warning(Event):  # noqa: A001 - the protocol's name for it
    kind: ClassVar[str] = "warning"
    message: str


@dataclass
class Log(Event):
    kind: ClassVar[str] = "log"
    message: str


@dataclass
class Done(Event):
    kind: ClassVar[str] = "done"
    result: str


@dataclass
class Error(Event):
    kind: ClassVar[str] = "error"
    message: str
    cancelled: bool = False


@dataclass
class Cancelled(Event):
    kind: ClassVar[str] = "cancelled"
    message: str = "cancelled by the user"


KINDS: dict[str, type[Event]] = {c.kind: c for c in (Progress, Warning, Log, Done, Error, Cancelled)}
FINAL = ("done", "error", "cancelled")
EventSink = Callable[[Event], None]


def from_dict(data) -> Event:
    """A record from a wire dict; anything unknown or malformed becomes a ``Log`` line (never raises)."""
    if isinstance(data, Event):
        return data
    if not isinstance(data, dict) or data.get(PROTOCOL_KEY) not in KINDS:
        return Log(json.dumps(data) if not isinstance(data, str) else data)
    cls = KINDS[data[PROTOCOL_KEY]]
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return Log(json.dumps(data))


def from_json(line: str) -> Event | None:
    """One protocol line -> record; blank -> None; plain text -> ``Log``."""
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return Log(line)
    return from_dict(data)


def no_cancel() -> bool:
    return False


class FileCancel:
    """Cancelled once ``path`` exists (Blender creates ``JOB.json.cancel``) or a signal arrived."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = path
        self.flag = False

    def __call__(self) -> bool:
        return self.flag or (self.path is not None and os.path.exists(self.path))


def part_of(done: float, total: float) -> float:
    return min(1.0, max(0.0, done / total if total else 1.0))


class Reporter:
    """Maps per-stage progress onto one overall fraction with an ETA and checks for cancel.

    With a cost model (``use_costs``: the pipeline's work counted from its settings and clip, unit
    times calibrated and then measured, see ``contracts.costs``) the ETA is the predicted seconds of
    every item not done yet, and each report's interval measures the items it finished; the fraction
    is the elapsed share of elapsed + ETA. Without one (or before its first prediction) ``plan`` gives
    each stage a relative cost (``resize`` corrects one once its size is known), and the ETA is the
    current stage at its own measured pace plus later stages at the measured seconds per plan unit.
    Either way ``eta_s`` is None until something is measured, so it never starts with a made-up
    figure and then climbs.
    """

    def __init__(self, sink: EventSink | None, cancel: Callable[[], bool] | None, plan: dict[str, float],
                 clock: Callable[[], float] = time.monotonic, warmup: tuple[str, ...] = ("load",)):
        self.sink = sink or (lambda e: None)
        self.cancel = cancel or no_cancel
        self.plan = dict(plan)
        self.clock = clock
        self.warmup = warmup  # stages whose pace says nothing about the others (imports, file reading)
        self.start = clock()
        self.fraction = 0.0
        self._stage: str | None = None
        self._stage_start = self._last = self.start
        self._first = (self.start, 0.0)  # (time, part) of the current stage's first report
        self._spent: dict[str, float] = {}  # seconds of finished stages
        self.costs: CostModel | None = None
        self._pos, self._pos_time = 0.0, self.start  # items done in the current stage, and since when

    def use_costs(self, costs: CostModel) -> None:
        """Predict from ``costs`` from now on (the pipeline builds it once the weights are loaded)."""
        self.costs = costs

    def resize(self, stage: str, cost: float) -> None:
        """Correct one stage's relative cost (e.g. once the number of windows is known)."""
        self.plan[stage] = float(cost)

    def check(self) -> None:
        if self.cancel():
            raise CancelledError()

    def progress(self, stage: str, done: float, total: float = 1.0, message: str = "") -> None:
        """Report ``done/total`` of ``stage`` and raise Cancelled if the user asked to stop."""
        now = self.clock()
        part = part_of(done, total)
        new_stage = stage != self._stage
        if new_stage:  # a stage starts where the previous report left off
            if self._stage is not None:
                self._spent[self._stage] = self._spent.get(self._stage, 0.0) + self._last - self._stage_start
            self._stage, self._stage_start = stage, self._last
            self._first = (now, part)
        eta = self._measure(stage, part, now, new_stage) if self.costs is not None else None
        self._last = now
        if eta is not None:  # the bar agrees with the ETA: the elapsed share of elapsed + left; full when done
            last = stage == list(self.plan)[-1] and part >= 1.0
            share = (now - self.start) / (now - self.start + eta or 1.0)
            self.fraction = 1.0 if last else min(0.999, max(self.fraction, share))
        else:
            base, span = self._offset(stage)
            self.fraction = min(1.0, max(self.fraction, base + span * part))
            eta = self.eta(stage, part, now) if self.costs is None else None
        self.sink(Progress(stage, round(self.fraction, 4), message, None if eta is None else round(eta, 1),
                           done, total))
        self.check()

    def _measure(self, stage: str, part: float, now: float, new_stage: bool) -> float | None:
        """Feed the cost model the items this report finished (within a stage: the interval since the
        previous report is theirs), then its ETA: the items left, less the time the one in progress
        has run. None in a warm-up stage, while a unit is unknown, and once that item overruns."""
        costs = self.costs
        pos = costs.position(stage, part)
        if not new_stage and pos > self._pos:
            costs.advance(stage, self._pos, pos, now - self._last)
        if new_stage or pos != self._pos:
            self._pos, self._pos_time = pos, now
        if stage in self.warmup or stage not in costs.stages:
            return None
        left, item = costs.remaining(stage, pos), costs.current(stage, pos)
        running = now - self._pos_time
        if left is None or (item is not None and running > item):
            return None
        return max(0.0, left - running)

    def eta(self, stage: str, part: float, now: float) -> float | None:
        """Seconds left: this stage at its own pace between its first and latest report (the first step
        carries set-up work, so it is not extrapolated alone), later stages at the pace per plan unit
        measured so far. None while nothing is measured, and when the estimate has run out."""
        if stage in self.warmup:
            return None
        stages = list(self.plan)
        later = sum(self.plan[s] for s in stages[stages.index(stage) + 1:]) if stage in stages else 0.0
        done = [s for s in self._spent if s in self.plan and s not in self.warmup]
        spent, units = sum(self._spent[s] for s in done), sum(self.plan[s] for s in done)
        in_stage, cost = now - self._stage_start, self.plan.get(stage, 0.0)
        t1, p1 = self._first
        if part > p1 and now > t1:
            per_unit = (spent + in_stage) / (units + cost * part) if units + cost * part > 0 else 0.0
            left = (now - t1) / (part - p1) * (1.0 - part) + per_unit * later
        elif units > 0.0:
            per_unit = spent / units
            left = per_unit * (cost + later) - in_stage
        else:
            return None  # nothing measured yet
        return left if left > 0.0 or self.fraction >= 1.0 else None  # overrun: say "estimating", not 0 s

    def _offset(self, stage: str) -> tuple[float, float]:
        total = sum(self.plan.values()) or 1.0
        acc = 0.0
        for name, cost in self.plan.items():
            if name == stage:
                return acc / total, cost / total
            acc += cost
        return self.fraction, 0.0

    def warning(self, message: str) -> None:
        self.sink(Warning(message))
