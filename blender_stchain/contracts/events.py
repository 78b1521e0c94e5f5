"""Progress events as typed records: the wire protocol between the worker and whoever started it.

Every entry point speaks one protocol: one JSON object per line whose ``"event"`` key names the kind
(``PROTOCOL_KEY``)::

    {"event": "progress", "stage", "fraction", "message", "eta_s", "done", "total"}
    {"event": "warning", "message"}      {"event": "log", "message"}
    {"event": "done", "result"}          {"event": "error", "message", "cancelled"}
    {"event": "cancelled", "message"}

Records read like the wire dict too (``event["stage"]``, ``event.get("message")``): a sink sees the same
keys whether a record was made in this process or parsed from another's line. The reporter that makes
them is ``contracts.progress``; cancellation lives with its error in ``contracts.errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar

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
class WarningEvent(Event):
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


KINDS: dict[str, type[Event]] = {c.kind: c for c in (Progress, WarningEvent, Log, Done, Error, Cancelled)}
FINAL = ("done", "error", "cancelled")  # the kinds that end a job: every reader stops at the first
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
