"""What a batch leaves besides results: ``summary.json``, ``events.jsonl``, the per-clip ``NAME.job.json``
(the hash ``--resume`` compares) and the one-line progress display. Every file is written atomically."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATUSES = ("done", "skipped", "failed", "cancelled")


@dataclass
class ClipRecord:
    """One clip's line in ``summary.json``."""

    name: str
    status: str = "pending"  # done | skipped | failed | cancelled (pending/running only while it runs)
    message: str = ""  # the one-line reason of a failure
    result: str = ""
    blend: str = ""
    attempts: int = 0  # worker runs started (a worker that died counts)
    seconds: float | None = None  # wall time of the last attempt, on the worker
    worker: str = ""  # node:pid of the last attempt
    source: str = ""


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name carrying our pid (a dead writer's leftovers are recognisable), then rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def sidecar(result: str | Path) -> Path:
    """``NAME.job.json`` next to ``NAME.safetensors``: the job and its hash, written after the result."""
    p = Path(result)
    return p.with_name(p.name.removesuffix(".safetensors") + ".job.json")


def finished_before(result: str, job_hash: str, blend: bool) -> bool:
    """``--resume``: the result (and .blend) exist and were made for exactly this job."""
    p = Path(result)
    if not p.is_file() or (blend and not p.with_suffix(".blend").is_file()):
        return False
    try:
        return json.loads(sidecar(p).read_text(encoding="utf-8")).get("hash") == job_hash
    except (OSError, ValueError, AttributeError):
        return False


def summary(records: list[ClipRecord], jobs: str, seconds: float, workers: int, ran: int) -> dict:
    counts = {s: sum(r.status == s for r in records) for s in STATUSES}
    return {"jobs": jobs, "seconds": round(seconds, 3), "workers": workers, "counts": counts,
            "clips_per_hour": round(3600 * ran / seconds, 2) if ran and seconds > 0 else None,
            "clips": [asdict(r) for r in records]}


class EventLog:
    """``events.jsonl``: one JSON object per line, every clip's events with a ``clip`` key (appended)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8")

    def write(self, event: dict) -> None:
        self.file.write(json.dumps({"t": round(time.time(), 3), **event}, default=str) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Progress:
    """One overall line: done / failed / left and an ETA (redrawn in place on a terminal)."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.last = ""

    def show(self, records: list[ClipRecord]) -> None:
        n = {s: sum(r.status == s for r in records) for s in (*STATUSES, "running")}
        finished = n["done"] + n["skipped"] + n["failed"] + n["cancelled"]
        left = self.total - finished
        elapsed = time.monotonic() - self.start
        eta = f", ETA {_duration(elapsed / n['done'] * left)}" if n["done"] and left else ""
        cancelled = f", {n['cancelled']} cancelled" if n["cancelled"] else ""
        line = (f"batch {_bar(finished / max(self.total, 1))} {n['done'] + n['skipped']}/{self.total} done, "
                f"{n['failed']} failed{cancelled}, {left} left ({n['running']} running)")
        if self.tty:  # redrawn in place; a log gets a line only when the counts change
            self.stream.write(f"\r{line}{eta}\033[K")
        elif line != self.last:
            self.stream.write(line + eta + "\n")
        self.stream.flush()
        self.last = line

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


def _bar(frac: float, width: int = 20) -> str:
    n = round(frac * width)
    return "[" + "#" * n + "." * (width - n) + "]"


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
