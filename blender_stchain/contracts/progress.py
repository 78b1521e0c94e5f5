"""Progress with an honest ETA: ``Reporter`` maps each stage's progress onto one fraction and sends
``Progress`` events; its time estimate is predicted seconds of a run, work counted before it starts x
unit times measured while it runs (``CostModel``).

A stage is a list of items in run order, each ``count`` units of one ``kind`` (a DiT step's FLOPs,
the anchor surface's SDF queries, one frame of a window). A kind's seconds per unit come, best first,
from this run's own measurements after its first (``observe``; a first call pays one-off set-up),
from a calibration (dummy inputs timed on the run's device right after the weights load), from a
``like`` kind counted in the same units (the stage-I denoiser's FLOPs cost what the stage-0 DiT's
FLOPs were measured to cost until denoiser steps are measured), or from that first measurement. A
kind with none of these has no prediction, and neither has any stage holding it: the ETA then says
"estimating" instead of making a figure up. Torch-free; ``engine.estimate`` fills the cost model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import Cancelled as CancelledError
from .errors import no_cancel
from .events import EventSink, Progress, WarningEvent


@dataclass(frozen=True)
class Item:
    kind: str
    count: float = 1.0


@dataclass
class CostModel:
    stages: dict[str, list[Item]]  # run order
    calibrated: dict[str, float] = field(default_factory=dict)  # kind -> seconds per unit
    like: dict[str, str] = field(default_factory=dict)  # kind -> kind whose unit stands in for it
    measured: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # kind -> [(units, seconds)]
    _open: tuple | None = field(default=None, repr=False, compare=False)  # (stage, stop, begin, seconds) of parts

    def unit(self, kind: str, _seen: frozenset = frozenset()) -> float | None:
        """Seconds per unit of ``kind``: its mean pace measured after its first observation (the first
        call of a kind pays one-off set-up: kernel selection, caches), with the prior (calibrated, else
        its ``like`` kind's) counted as one more observation of the first one's size; no prior: the
        measurements alone; nothing: None."""
        observed = self.measured.get(kind, [])
        prior = self._prior(kind, _seen | {kind})
        if prior is None:
            return _pace(observed[1:] or observed) if observed else None
        if not observed:
            return prior
        first = observed[0][0]
        return (prior * first + sum(s for _, s in observed[1:])) / (first + sum(u for u, _ in observed[1:]))

    def _prior(self, kind: str, seen: frozenset) -> float | None:
        if kind in self.calibrated:
            return self.calibrated[kind]
        like = self.like.get(kind)
        return None if like is None or like in seen else self.unit(like, seen)

    def observe(self, kind: str, units: float, seconds: float) -> None:
        """``units`` of ``kind`` took ``seconds``; the unit is the mean pace of these observations."""
        if units > 0 and seconds >= 0:
            self.measured.setdefault(kind, []).append((units, seconds))

    def item_seconds(self, item: Item) -> float | None:
        unit = self.unit(item.kind)
        return None if unit is None else unit * item.count

    def seconds(self, stage: str, start: float = 0.0) -> float | None:
        """Predicted seconds of ``stage`` from item position ``start`` on (a fraction: part of an item)."""
        total = 0.0
        for i, item in enumerate(self.stages.get(stage, ())):
            left = min(1.0, max(0.0, i + 1 - start))
            if left > 0:
                cost = self.item_seconds(item)
                if cost is None:
                    return None
                total += cost * left
        return total

    def position(self, stage: str, part: float) -> float:
        """Items done in ``stage`` when ``part`` (0..1) of it is reported (items are evenly spaced)."""
        return part * len(self.stages.get(stage, ()))

    def remaining(self, stage: str, position: float) -> float | None:
        """Seconds left: ``stage`` from ``position`` on, then every later stage; None if any is unknown."""
        names = list(self.stages)
        later = names[names.index(stage) + 1:] if stage in names else []
        parts = [self.seconds(stage, position)] + [self.seconds(s) for s in later]
        return None if any(p is None for p in parts) else sum(parts)

    def current(self, stage: str, position: float) -> float | None:
        """Predicted seconds of the item in progress at ``position`` (None past the stage's end)."""
        items = self.stages.get(stage, ())
        i = int(position)
        return self.item_seconds(items[i]) if i < len(items) else None

    def advance(self, stage: str, start: float, stop: float, seconds: float) -> None:
        """Items ``start``..``stop`` of ``stage`` took ``seconds``: measured when they are whole items of
        one kind (a span over several kinds cannot say which took the time, and a stage reporting parts
        of an item, such as the camera's phases, does not spend its time evenly over them). Consecutive
        reports in parts add up: from a whole position through parts to the next whole one is measured
        as one span (a window's batched frames finish together and are reported in fractions)."""
        begin, before = start, 0.0
        if self._open is not None and self._open[:2] == (stage, start):
            begin, before = self._open[2], self._open[3]
        self._open = None
        if not _whole(begin):
            return
        if not _whole(stop):
            self._open = (stage, stop, begin, before + seconds)
            return
        items = self.stages.get(stage, ())
        spans = [(item, min(i + 1, stop) - max(i, begin)) for i, item in enumerate(items)]
        spans = [(item, share) for item, share in spans if share > 0]
        if spans and len({item.kind for item, _ in spans}) == 1:
            self.observe(spans[0][0].kind, sum(item.count * share for item, share in spans), before + seconds)

    def total(self) -> float | None:
        parts = [self.seconds(s) for s in self.stages]
        return None if any(p is None for p in parts) else sum(parts)


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


def _pace(observed: list[tuple[float, float]]) -> float:
    return sum(s for _, s in observed) / sum(u for u, _ in observed)


def part_of(done: float, total: float) -> float:
    return min(1.0, max(0.0, done / total if total else 1.0))


class Reporter:
    """Maps per-stage progress onto one overall fraction with an ETA and checks for cancel.

    With a cost model (``use_costs``: the pipeline's work counted from its settings and clip, unit
    times calibrated and then measured, see ``CostModel`` above) the ETA is the predicted seconds of
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
        self.sink(WarningEvent(message))
