""""Preview Masks": only the segmentation, through the worker process (progress, Esc cancels), cached
next to the .blend; and the masks Generate uses when the mask source is "Segment object" (issue 12)."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..engine.errors import StchainError
from . import footage, prefs, segment
from .controller import State
from .ops import _active, _Driven, _job_dir, _status, footage_path
from .runner import ProcessRunner, cancel_path


def plan(context):
    """(footage source, frames, prompts, cache folder) of the scene's job settings."""
    props = context.scene.stchain
    if props.mask != "SEGMENT":
        raise StchainError("Set Mask to 'Segment Object' first (4D Mesh panel)")
    src = footage.probe(footage_path(props), fps_default=context.scene.render.fps / context.scene.render.fps_base)
    frames = (props.frame_first, props.frame_last) if props.use_frame_range else (1, src.count)
    prompts = segment.collect(props, src, frames)
    return src, frames, prompts, segment.cache_dir(src.path, frames, prompts, props.segment_model)


def masks_for_generate(context) -> str:
    """The cached masks of the current prompts, or one clear line saying to preview them first."""
    _, frames, _, folder = plan(context)
    if not segment.cached(folder, frames):
        raise StchainError("No masks for these markers yet: click Preview Masks (4D Mesh panel) first; "
                           "Generate then uses them")
    return str(folder)


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
        src, frames, prompts, folder = self._plan
        p = prefs.get(context)
        job_dir = _job_dir()
        frames_dir = footage.export(src, frames, job_dir / "footage", mask="none")
        job = segment.write_job(job_dir / "segment.json", frames_dir, folder, prompts,
                                context.scene.stchain.segment_model,
                                self.weights or prefs.weights_dir(context), self.device or (p.device if p else "auto"))
        python = prefs.python(context)
        return ProcessRunner(["-m", segment.WORKER, job], cancel_file=cancel_path(job), python=python,
                             pythonpath=prefs.pythonpath(python))

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
