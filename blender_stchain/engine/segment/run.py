"""``segment_footage``: footage + prompts -> one mask per frame in a folder, with progress and cancel.

This is what ``python -m blender_stchain masks``, ``run --segment`` and Blender's "Preview masks" call.
Frames are read one at a time; masks are written as they come (see ``propagate``), so a 1,000-frame
clip needs no more memory than a 100-frame one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError, WeightsError
from ...contracts.progress import Reporter
from ...contracts.prompts import Prompts, resolve
from ..footage import open_footage
from ..footage.common import frames_text
from ..weights.catalogue import find_root
from ..weights.preflight import RANDOM_REFUSED
from . import catalogue
from .masks_io import MaskFolderWriter
from .masks_io import overlay as overlay_image

PLAN = {"load": 1.0, "segment": 20.0, "write": 0.2}
SMOKE = "SMOKE TEST: random SAM 2.1 weights (make-random); the masks are meaningless"


@dataclass(frozen=True)
class SegmentSummary:
    folder: Path
    frames: tuple[int, ...]  # 1-based footage frame numbers that got a mask
    empty: tuple[int, ...]  # frames where SAM 2.1 found no object
    model: str
    is_random: bool


def resolve_model(root: Path, name: str | None) -> str:
    """The requested size, else the default, else whichever size is present."""
    if name:
        return catalogue.model_name(name)
    have = catalogue.present(root)
    return catalogue.DEFAULT_MODEL if catalogue.DEFAULT_MODEL in have or not have else have[0]


def segment_footage(footage, prompts: Prompts, out, frames: tuple[int, int] | None = None, weights=None,
                    model: str | None = None, device: str = "auto", on_event=None, cancel=None,
                    whole_clip: bool = False, overlay=None, allow_random: bool = False) -> SegmentSummary:
    """Masks for the chosen frames (1-based inclusive ``frames``) into the folder ``out``.

    ``whole_clip`` also writes empty masks for the frames outside ``frames``, so the folder pairs with
    the footage frame for frame (``--masks`` wants one mask per footage frame). ``overlay``: a second folder
    with each frame shown under its mask (Blender's preview). ``allow_random``: accept make-random SAM 2.1
    weights (a smoke test, said in a warning); refused otherwise, as the backbone's are.
    """
    from ..device import runtime
    from .model import load
    from .propagate import Propagator

    rep = Reporter(on_event, cancel, PLAN)
    rep.progress("load", 0, message="reading footage")
    clip = open_footage(footage, frames=frames)
    writer = over = None
    try:
        frame_prompts = resolve(prompts, clip.frame_numbers, clip.source_size)
        root = find_root(weights)
        name = resolve_model(root, model)
        net, is_random = load(root, name, runtime(device).device)
        if is_random and not allow_random:
            raise WeightsError(RANDOM_REFUSED.format(root=catalogue.folder(root, name)))
        if is_random:
            rep.warning(SMOKE)
        rep.progress("load", 1, message=f"{name} loaded")
        writer = MaskFolderWriter(out)
        over = MaskFolderWriter(overlay) if overlay else None
        numbers = clip.frame_numbers
        empty, done = [], 0
        propagator = Propagator(net, lambda i: clip.read(i)[0], clip.count, clip.source_size, rep.check)
        for mf in propagator.run(frame_prompts):
            writer.write(numbers[mf.index], mf.mask)
            if over is not None:
                over.write_rgb(numbers[mf.index], overlay_image(clip.read(mf.index)[0], mf.mask))
            if not mf.mask.any():
                empty.append(numbers[mf.index])
            done += 1
            rep.progress("segment", done, clip.count, f"mask of frame {numbers[mf.index]} ({done}/{clip.count})")
        if whole_clip:
            _fill_outside(writer, footage, numbers, clip.source_size)
        if empty:
            rep.warning(f"{footage}: the object is not found (empty mask) on {frames_text(empty)}; it left the "
                        "picture or was lost there; add a prompt on one of those frames if it is visible")
        rep.progress("write", 0, message="publishing the masks")
        folder = writer.finish()
        if over is not None:
            over.finish()
    except BaseException:
        for w in (writer, over):
            if w is not None:
                w.abort()
        raise
    finally:
        clip.close()
    rep.progress("write", 1, message=f"{len(numbers)} masks in {folder}")
    return SegmentSummary(folder, tuple(numbers), tuple(sorted(empty)), name, is_random)


def _fill_outside(writer: MaskFolderWriter, footage, numbers, size) -> None:
    chosen = set(numbers)
    with open_footage(footage) as whole:
        outside = [n for n in whole.frame_numbers if n not in chosen]
    blank = np.zeros((size[1], size[0]), bool)
    for n in outside:
        writer.write(n, blank)


def require_mask_source(footage, masks, prompts: Prompts, frames=None) -> None:
    """Stop a run that would feed whole frames to the backbone: no masks, no alpha, no prompt."""
    if masks or prompts:
        return
    with open_footage(os.fspath(footage), frames=frames) as clip:
        kind = clip.mask_kind
    if kind == "none":
        from ...contracts.prompts import HOW

        raise FootageError(f"{footage} has no alpha and no masks were given; {HOW}")
