""""Preview Masks": only the segmentation, through the worker process (progress, Esc cancels), cached
next to the .blend; and the masks Generate uses when the mask source is "Segment object" (issue 12)."""

from __future__ import annotations

import threading
from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..engine.errors import StchainError
from . import footage, prefs, segment
from .controller import State
from .ops import _active, _Driven, _job_dir, _status, footage_path
from .runner import FINAL, ProcessRunner, _Base, cancel_path


def plan(context):
    """(footage source, frames, prompts, cache folder) of the scene's job settings."""
    props = context.scene.stchain
    if props.mask != "SEGMENT":
        raise StchainError("Set Mask to 'Segment Object' first (4D Mesh panel)")
    src = footage.probe(footage_path(props), fps_default=context.scene.render.fps / context.scene.render.fps_base)
    frames = (props.frame_first, props.frame_last) if props.use_frame_range else (1, src.count)
    prompts = segment.collect(props, src, frames)
    return src, frames, prompts, segment.cache_dir(src.path, frames, prompts, props.segment_model)


def segmentation_runner(context, the_plan, frames_dir: Path, job_dir: Path, weights=None, device=None):
    """The worker process that writes the masks of ``the_plan`` from an exported frames folder."""
    p = prefs.get(context)
    _, _, prompts, folder = the_plan
    job = segment.write_job(job_dir / "segment.json", frames_dir, folder, prompts, context.scene.stchain.segment_model,
                            weights or prefs.weights_dir(context), device or (p.device if p else "auto"))
    python = prefs.python(context)
    return ProcessRunner(["-m", segment.WORKER, job], cancel_file=cancel_path(job), python=python,
                         pythonpath=prefs.pythonpath(python))


class ChainRunner(_Base):
    """Runners one after another as one job (segmentation, then the model): every event passes through,
    the first failure or a cancel ends the chain, the last runner's final event is the chain's."""

    def __init__(self, runners):
        super().__init__()
        self.runners = list(runners)
        self.current = None
        self._thread = None

    def start(self) -> "ChainRunner":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        self._cancel_requested = True
        if self.current is not None:
            self.current.cancel()

    def _run(self):
        final = None
        for runner in self.runners:
            if self._cancel_requested:
                break
            self.current = runner.start()
            final = runner.wait(on_event=lambda e: None if e.get("event") in FINAL else self._queue.put(e))
            if final.get("event") != "done":
                break
        self._finish(final)


def masks_for_generate(context, frames_dir: Path, job_dir: Path, runner, weights=None, device=None):
    """Generate with "Segment Object": the cached masks of the current prompts, else segmentation runs first
    (same exported frames) and its masks are cached for the next time. -> (masks folder, runner)."""
    the_plan = plan(context)
    _, frames, _, folder = the_plan
    if segment.cached(folder, frames):
        return str(folder), runner
    first = segmentation_runner(context, the_plan, frames_dir, job_dir, weights, device)
    return str(folder), ChainRunner([first, runner])


class STCHAIN_OT_preview_masks(_Driven, bpy.types.Operator):
    """Segment the object marked by tracking markers (or a Mask's box) through the clip and show the masks"""

    bl_idname = "stchain.preview_masks"
    bl_label = "Preview Masks"
    _key = "masks"
    _echo = True

    weights: StringProperty(name="Weights", subtype="DIR_PATH", description="Weights folder (empty = preferences)")
    device: StringProperty(name="Device", description="auto, cpu, cuda, cuda:N or mps (empty = preferences)")

    @classmethod
    def poll(cls, context):
        job = _active.get("masks")
        return job is None or job.finished

    def execute(self, context):
        return self._from_cache(context) or _Driven.execute(self, context)

    def invoke(self, context, event):
        return self._from_cache(context) or _Driven.invoke(self, context, event)

    def _from_cache(self, context):
        try:
            self._plan = plan(context)
        except StchainError as e:
            return self._fail(context, str(e))
        _, frames, _, folder = self._plan
        if segment.cached(folder, frames):
            segment.show(folder, frames)
            _status(context, None, f"Masks of frames {frames[0]}-{frames[1]} (cached) in {folder}")
            self.report({"INFO"}, context.window_manager.stchain_status.message)
            return {"FINISHED"}
        return None

    def _prepare(self, context):
        job_dir = _job_dir()
        frames_dir = footage.export(self._plan[0], self._plan[1], job_dir / "footage", mask="none")
        return segmentation_runner(context, self._plan, frames_dir, job_dir, self.weights, self.device)

    def _done(self, context, ctl):
        if ctl.state != State.DONE:
            return self._fail(context, ctl.message)
        _, frames, _, folder = self._plan
        segment.show(Path(ctl.result_path), frames)
        notes = [w for w in ctl.warnings if not w.startswith("SMOKE")]
        _status(context, ctl, f"Masks of frames {frames[0]}-{frames[1]} in {folder}" + (f"; {notes[0]}" if notes else ""))
        self.report({"WARNING" if notes else "INFO"}, context.window_manager.stchain_status.message)
        return {"FINISHED"}


CLASSES = (STCHAIN_OT_preview_masks,)
