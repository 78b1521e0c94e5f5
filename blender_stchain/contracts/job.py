"""JobSpec: the only thing that crosses from Blender (or the CLI) into the runtime.

A job file is plain JSON, validated field by field against this schema before anything runs;
nothing in it is ever executed or imported.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import JobError
from .settings import PRESETS, Settings

METHODS = ("chain", "actionmesh")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class JobSpec:
    footage: str  # folder of images / RGBA PNGs, a video file, or a frames .npz written by Blender
    out: str  # result.safetensors path
    weights: str | None = None  # weights root; None = STCHAIN_WEIGHTS or the default folder
    masks: str | None = None  # folder of mask images (same count as frames), or None (alpha / none)
    frames: tuple[int, int] | None = None  # 1-based inclusive footage frame range
    method: str = "chain"
    preset: str = "balanced"
    device: str = "auto"
    precision: str = "auto"
    settings: dict = field(default_factory=dict)  # overrides of Settings fields
    allow_random_weights: bool = False  # smoke tests with make-random checkpoints

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.footage, str) or not self.footage:
            raise JobError("footage must be a path (a video file or a folder of images)")
        if not isinstance(self.out, str) or not self.out:
            raise JobError("out must be a path (where the result is written)")
        _choice("method", self.method, METHODS)
        _choice("preset", self.preset, tuple(PRESETS))
        _choice("precision", self.precision, PRECISIONS)
        if not (self.device in DEVICES or _is_cuda_index(self.device)):
            raise JobError(f"device {self.device!r} is not one of auto, cpu, cuda, cuda:N, mps")
        if self.frames is not None:
            a, b = _frame_range(self.frames)
            self.frames = (a, b)
        if not isinstance(self.settings, dict):
            raise JobError("settings must be a JSON object of NAME: VALUE")
        try:
            self.resolved_settings()
        except (ValueError, TypeError) as e:
            raise JobError(str(e)) from None

    def resolved_settings(self) -> Settings:
        from .settings import preset

        names = {f.name: f for f in fields(Settings)}
        for key, value in self.settings.items():
            if key in names and not _plain(value):
                raise JobError(f"setting {key} must be a number, a word, a list of numbers or null")
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in self.settings.items()}
        return preset(self.preset, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data) -> "JobSpec":
        if not isinstance(data, dict):
            raise JobError("the job file must hold a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise JobError(f"the job file has unknown field(s) {', '.join(sorted(unknown))}")
        for name in ("footage", "out"):
            if name not in data:
                raise JobError(f"the job file needs '{name}'")
        return cls(**data)

    @classmethod
    def load(cls, path) -> "JobSpec":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise JobError(f"job file {path} cannot be read: {e}") from None
        return cls.from_dict(data)


def _choice(name, value, choices):
    if value not in choices:
        raise JobError(f"{name} {value!r} is not one of {', '.join(choices)}")


def _is_cuda_index(device) -> bool:
    return isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit()


def _frame_range(frames) -> tuple[int, int]:
    ok = isinstance(frames, (list, tuple)) and len(frames) == 2 and all(type(x) is int for x in frames)
    if not ok or frames[0] < 1 or frames[1] < frames[0]:
        raise JobError(f"frames must be first:last, 1-based and inclusive (e.g. 1:16), got {_frames_text(frames)}")
    return int(frames[0]), int(frames[1])


def _frames_text(frames) -> str:
    if isinstance(frames, (list, tuple)) and len(frames) == 2:
        return f"{frames[0]}:{frames[1]}"
    return repr(frames)


def _plain(value) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return value is None or isinstance(value, (int, float, str))
