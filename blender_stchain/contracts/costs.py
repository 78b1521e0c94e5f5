"""Predicted seconds of a run: work counted before it starts x unit times measured while it runs.

A stage is a list of items in run order, each ``count`` units of one ``kind`` (a DiT step's FLOPs,
the anchor surface's SDF queries, one frame of a window). A kind's seconds per unit come, best first,
from this run's own measurements after its first (``observe``; a first call pays one-off set-up),
from a calibration (dummy inputs timed on the run's device right after the weights load), from a
``like`` kind counted in the same units (the stage-I denoiser's FLOPs cost what the stage-0 DiT's
FLOPs were measured to cost until denoiser steps are measured), or from that first measurement. A
kind with none of these has no prediction, and neither has any stage holding it: the ETA then says
"estimating" instead of making a figure up. Torch-free; ``engine.estimate`` fills it,
``contracts.events.Reporter`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
