""""Preview Masks": only the segmentation, through the worker process (progress, Esc cancels); the footage
under its masks is shown as a Movie Clip and the masks are cached next to the .blend."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from ...contracts.errors import StchainError
from .. import footage, prefs
from ..controller import State
from ..runner import new_job_dir, remove_job_dir
from ..ops import _active, _Driven, _status, footage_path
from . import jobs, markers


def plan(context):
    """(footage source, frames, prompts, cache folder) of the scene's job settings."""
    props = context.scene.stchain
    src = footage.probe(footage_path(props), fps_default=context.scene.render.fps / context.scene.render.fps_base)
    frames = (props.frame_first, props.frame_last) if props.use_frame_range else None
    return jobs.plan_for(props, src, frames)


class STCHAIN_OT_preview_masks(_Driven, bpy.types.Operator):
    """Segment the object marked by tracking markers (or a Mask's box) through the clip and show the masks"""

    bl_idname = "stchain.preview_masks"
    bl_label = "Preview Masks"
    _key = "masks"
    _echo = True

    weights: StringProperty(name="Weights", subtype="DIR_PATH", description="Weights folder (empty = preferences)")
    device: StringProperty(name="Device", description="auto, cpu, cuda, cuda:N or mps (empty = preferences)")
    allow_random_weights: BoolProperty(name="Allow Random Weights", options={"HIDDEN", "SKIP_SAVE"},
                                       description="Accept make-random SAM 2.1 weights (a smoke test; tests only)")

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
        if markers.cached(folder, frames):
            markers.show(folder, frames)
            _status(context, None, f"Masks of frames {frames[0]}-{frames[1]} (cached) in {folder}")
            self.report({"INFO"}, context.window_manager.stchain_status.message)
            return {"FINISHED"}
        return None

    _job_dir = None

    def _prepare(self, context):
        self._job_dir = new_job_dir(prefs.user_dir("jobs"))
        try:
            frames_dir = footage.export(self._plan[0], self._plan[1], self._job_dir / "footage", mask="none")
            return jobs.segmentation_runner(context, self._plan, frames_dir, self._job_dir, self.weights,
                                            self.device, allow_random=self.allow_random_weights)
        except BaseException:
            self._cleanup()
            raise

    def _cleanup(self):
        """The exported frames and the job file go; the masks stay in their cache beside the .blend."""
        remove_job_dir(self._job_dir)
        self._job_dir = None

    def _done(self, context, ctl):
        if ctl.state != State.DONE:
            return self._fail(context, ctl.message)
        _, frames, _, folder = self._plan
        markers.show(Path(ctl.result_path), frames)
        notes = [w for w in ctl.warnings if not w.startswith("SMOKE")]
        _status(context, ctl, f"Masks of frames {frames[0]}-{frames[1]} in {folder}" + (f"; {notes[0]}" if notes else ""))
        self.report({"WARNING" if notes else "INFO"}, context.window_manager.stchain_status.message)
        return {"FINISHED"}


CLASSES = (STCHAIN_OT_preview_masks,)
