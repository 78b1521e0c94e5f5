"""What the user marks once: points (positive / negative) and boxes, in footage pixels, on a frame.

Torch-free (Blender builds prompts from tracking markers with it). Text forms, as the command line
takes them: ``X,Y[@FRAME]`` a point on the object, ``-X,Y[@FRAME]`` a background point,
``X0,Y0,X1,Y1[@FRAME]`` a box. FRAME is the 1-based footage frame number, as ``--frames`` uses;
without it the prompt belongs to the first frame of the chosen range. Coordinates are footage
pixels with (0, 0) the top-left corner of the top-left pixel.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace
import re
from dataclasses import dataclass

from .errors import StchainError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_POINT = re.compile(rf"^\s*(-)?\s*({_NUM})\s*,\s*({_NUM})\s*(?:@\s*(\d+))?\s*$")
_BOX = re.compile(rf"^\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*(?:@\s*(\d+))?\s*$")
HOW = ("mark the object: --segment X,Y[@FRAME] (a point on it, footage pixels; -X,Y for background) or "
       "--segment-box X0,Y0,X1,Y1[@FRAME], or give masks (--masks DIR) or footage with alpha")


SEGMENT_MODELS = tuple(f"sam2.1-hiera-{s}" for s in ("tiny", "small", "base-plus", "large"))
SEGMENT_FLAGS = ("--segment", "--segment-box")


class PromptError(StchainError):
    """A prompt that cannot be used: the message names it and says what to do."""


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    positive: bool = True
    frame: int | None = None  # 1-based footage frame number; None = first frame of the range


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    frame: int | None = None


@dataclass(frozen=True)
class FramePrompt:
    """Everything marked on one frame, validated: points (n, 2) with labels 1/0, and at most one box."""

    index: int  # 0-based index in the chosen range
    frame: int  # 1-based footage frame number
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Prompts:
    points: tuple[Point, ...] = ()
    boxes: tuple[Box, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.points or self.boxes)

    def key(self) -> str:
        """A stable text of the prompts (caches are keyed on it)."""
        pts = ";".join(f"{'+' if p.positive else '-'}{p.x:g},{p.y:g}@{p.frame}" for p in self.points)
        bxs = ";".join(f"{b.x0:g},{b.y0:g},{b.x1:g},{b.y1:g}@{b.frame}" for b in self.boxes)
        return f"points[{pts}] boxes[{bxs}]"


def parse_point(text: str) -> Point:
    m = _POINT.match(str(text))
    if not m:
        raise PromptError(f"--segment {text!r}: expected X,Y or X,Y@FRAME (footage pixels; -X,Y for background)")
    neg, x, y, frame = m.groups()
    return Point(float(x), float(y), positive=not neg, frame=None if frame is None else int(frame))


def parse_box(text: str) -> Box:
    m = _BOX.match(str(text))
    if not m:
        raise PromptError(f"--segment-box {text!r}: expected X0,Y0,X1,Y1 or X0,Y0,X1,Y1@FRAME (footage pixels)")
    x0, y0, x1, y1, frame = m.groups()
    return Box(float(x0), float(y0), float(x1), float(y1), None if frame is None else int(frame))


def parse(points: list[str] | None = None, boxes: list[str] | None = None) -> Prompts:
    return Prompts(tuple(parse_point(p) for p in points or ()), tuple(parse_box(b) for b in boxes or ()))


def _frame_index(frame: int | None, numbers: tuple[int, ...], what: str) -> tuple[int, int]:
    if frame is None:
        return 0, numbers[0]
    if not numbers[0] <= frame <= numbers[-1]:
        raise PromptError(f"{what} is on frame {frame}, outside the chosen frames {numbers[0]}-{numbers[-1]}; "
                          "put it on a frame inside --frames A:B")
    return frame - numbers[0], frame


def _inside(x: float, y: float, size: tuple[int, int]) -> bool:
    return 0 <= x <= size[0] and 0 <= y <= size[1]


def resolve(prompts: Prompts, numbers: tuple[int, ...], size: tuple[int, int]) -> list[FramePrompt]:
    """Group by frame and validate against the chosen frames and the footage size (W, H)."""
    if not prompts:
        raise PromptError("no object to segment: " + HOW)
    w, h = size
    by_frame: dict[int, dict] = {}
    for p in prompts.points:
        what = f"point {'' if p.positive else '-'}{p.x:g},{p.y:g}"
        i, n = _frame_index(p.frame, numbers, what)
        if not _inside(p.x, p.y, size):
            raise PromptError(f"{what} (frame {n}) is outside the {w}x{h} footage; points are footage pixels, "
                              f"0 <= X <= {w}, 0 <= Y <= {h}")
        entry = by_frame.setdefault(i, {"frame": n, "points": [], "labels": [], "box": None})
        entry["points"].append((p.x, p.y))
        entry["labels"].append(1 if p.positive else 0)
    for b in prompts.boxes:
        what = f"box {b.x0:g},{b.y0:g},{b.x1:g},{b.y1:g}"
        i, n = _frame_index(b.frame, numbers, what)
        if not (b.x1 > b.x0 and b.y1 > b.y0):
            raise PromptError(f"{what}: needs X0 < X1 and Y0 < Y1 (top-left, then bottom-right corner)")
        if not (_inside(b.x0, b.y0, size) and _inside(b.x1, b.y1, size)):
            raise PromptError(f"{what} (frame {n}) reaches outside the {w}x{h} footage")
        entry = by_frame.setdefault(i, {"frame": n, "points": [], "labels": [], "box": None})
        if entry["box"] is not None:
            raise PromptError(f"two boxes on frame {n}; give one box per frame (add points to refine it)")
        entry["box"] = (b.x0, b.y0, b.x1, b.y1)
    out = []
    for i in sorted(by_frame):
        e = by_frame[i]
        if e["box"] is None and 1 not in e["labels"]:
            raise PromptError(f"frame {e['frame']} has only background points; add a point on the object "
                              "(X,Y without the minus) or a box")
        out.append(FramePrompt(i, e["frame"], tuple(e["points"]), tuple(e["labels"]), e["box"]))
    return out


# ----------------------------------------------------------------------------------------- command line

def add_segment_options(p: argparse.ArgumentParser, save: bool = True) -> None:
    """The prompt options of ``run``, ``masks`` and the Blender headless entry."""
    p.add_argument("--segment", action="append", default=[], metavar="X,Y[@FRAME]",
                   help="a point on the object in footage pixels (repeatable); -X,Y marks background")
    p.add_argument("--segment-box", action="append", default=[], metavar="X0,Y0,X1,Y1[@FRAME]",
                   help="a box around the object in footage pixels (one per frame)")
    p.add_argument("--segment-model", default=None, metavar="SIZE",
                   help="SAM 2.1 size: tiny (default), small, base-plus, large")
    if save:
        p.add_argument("--save-masks", default=None, metavar="DIR", help="also keep the masks in DIR")


def join_negative(argv: list[str]) -> list[str]:
    """``--segment -10,20`` -> ``--segment=-10,20`` (argparse would read ``-10,20`` as an option)."""
    out, it = [], iter(argv)
    for a in it:
        if a in SEGMENT_FLAGS:
            nxt = next(it, None)
            out.append(a if nxt is None else f"{a}={nxt}")
        else:
            out.append(a)
    return out


def segment_args(a) -> SimpleNamespace:
    """What ``prepare_masks`` reads, from a parsed job command line (``contracts.options.JobArgs``)."""
    job = a.job
    frames = None if job.frames is None else "{}:{}".format(*job.frames)
    return SimpleNamespace(footage=job.footage, masks=job.masks, frames=frames, weights=job.weights,
                           device=job.device, segment=a.extra.get("segment") or [],
                           segment_box=a.extra.get("segment_box") or [], save_masks=a.extra.get("save_masks"),
                           segment_model=a.extra.get("segment_model"),
                           allow_random_weights=job.allow_random_weights)
