"""JOBS -> clip jobs: a folder of clips, a glob, or a JSON-lines file (one job per line).

A line or clip that cannot become a job is kept with its one-line reason, so it is reported in
``summary.json`` like a clip that failed, and the batch goes on.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..contracts.errors import JobError, StchainError
from ..contracts.job import JobSpec

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".npz")
LINE_KEYS = ("footage", "masks", "frames", "method", "preset", "set", "name")
RESULT_SUFFIX = ".safetensors"


@dataclass
class ClipJob:
    """One clip of the batch: its output name and the ``JobSpec`` fields (``out`` in the batch folder)."""

    name: str
    spec: dict = field(default_factory=dict)
    error: str | None = None  # why this entry cannot run (it is recorded, never run)
    source: str = ""  # where it came from: a path, or FILE:LINE

    @property
    def result(self) -> str:
        return self.spec.get("out", "")


def parse_jobs(jobs: str, out_dir, defaults: dict) -> list[ClipJob]:
    """The clips of JOBS with ``defaults`` (JobSpec fields: weights, device, method, settings, ...)."""
    entries = _entries(str(jobs))
    if not entries:
        raise StchainError(f"JOBS {jobs} holds no clips (a folder of clips, a glob, or a .jsonl file)")
    taken: set[str] = set()
    return [_clip_job(line, source, Path(out_dir), defaults, taken) for line, source in entries]


def _entries(jobs: str) -> list[tuple[dict | str, str]]:
    """(job line or footage path, source) pairs; a JSON line that does not parse stays a string."""
    path = Path(jobs).expanduser()
    if path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson"):
        return _json_lines(path)
    if path.is_dir():
        return [({"footage": str(p)}, str(p)) for p in _clips_in(path)]
    if any(c in jobs for c in "*?["):
        return [({"footage": p}, p) for p in sorted(glob.glob(str(path)))]
    raise StchainError(f"JOBS {jobs} is not a folder of clips, a glob or a .jsonl file (one JSON job per line)")


def _clips_in(folder: Path) -> list[Path]:
    """Clips of a folder: its sub-folders (image sequences) and video files."""
    items = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    clips = [p for p in items if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES]
    if not clips and any(p.is_file() for p in items):
        raise StchainError(f"{folder} holds files but no clips (sub-folders of images or videos); for one "
                           "image sequence use `python -m blender_stchain run`")
    return clips


def _json_lines(path: Path) -> list[tuple[dict | str, str]]:
    out = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as e:
            line = f"not valid JSON ({e.msg} at column {e.colno})"
        out.append((_relative_to(line, path.parent), f"{path}:{number}"))
    return out


def _relative_to(line, base: Path):
    """Footage and masks paths of a JSON line are relative to the file's folder."""
    if isinstance(line, dict):
        for key in ("footage", "masks"):
            if isinstance(line.get(key), str):
                line[key] = str((base / Path(line[key]).expanduser()))
    return line


def _clip_job(line, source: str, out_dir: Path, defaults: dict, taken: set[str]) -> ClipJob:
    name = _name(line)
    try:
        if isinstance(line, str):
            raise JobError(line)
        if not isinstance(line, dict):
            raise JobError("a job line must be a JSON object")
        unknown = sorted(set(line) - set(LINE_KEYS))
        if unknown:
            raise JobError(f"unknown key(s) {', '.join(unknown)}; a job line may have {', '.join(LINE_KEYS)}")
        if "name" in line:
            if name in taken:
                raise JobError(f"name {name!r} is used by an earlier job")
        else:
            name = _unique(name, taken)
        taken.add(name)
        spec = _spec(line, defaults, out_dir / (name + RESULT_SUFFIX))
        JobSpec(**spec)  # validate now: a bad line is reported, never sent to a worker
        return ClipJob(name, spec, source=source)
    except StchainError as e:
        return ClipJob(name, error=f"{source}: {e}", source=source)


def _name(line) -> str:
    if not isinstance(line, dict):
        return "line"
    name = line.get("name") or Path(str(line.get("footage", "clip"))).stem or "clip"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "clip"


def _unique(name: str, taken: set[str]) -> str:
    k, out = 1, name
    while out in taken:
        k += 1
        out = f"{name}-{k}"
    return out


def _spec(line: dict, defaults: dict, out: Path) -> dict:
    if "footage" not in line:
        raise JobError("'footage' is required")
    overrides = line.get("set", {})
    if not isinstance(overrides, dict):
        raise JobError("'set' must be an object of setting overrides")
    spec = {**defaults, "footage": line["footage"], "out": str(out)}
    for key in ("masks", "method", "preset"):
        if key in line:
            spec[key] = line[key]
    if "frames" in line:
        spec["frames"] = _frames(line["frames"])
    spec["settings"] = {**defaults.get("settings", {}), **overrides}
    return spec


def _frames(value):
    if isinstance(value, str):
        a, sep, b = value.partition(":")
        if not (sep and a.strip().isdigit() and b.strip().isdigit()):
            raise JobError(f"frames must be [first, last] or \"A:B\" (1-based, inclusive), got {value!r}")
        return [int(a), int(b)]
    return value
