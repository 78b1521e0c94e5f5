"""Operators. They hold no logic: props -> JobSpec -> runner -> Result -> scene writer.

One operator, two drivers: ``invoke`` runs non-blocking (modal + timer driving a Controller,
Esc cancels); ``execute`` blocks and prints JSON progress lines (scripts and ``blender -b``,
where timers and modal handlers never run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from ..contracts.errors import StchainError
from ..contracts.job import JobSpec
from ..lens import footage_lens
from ..contracts.result import load_result
from ..contracts.terminal import Printer
from . import footage, prefs, scene_writer
from .controller import Controller, State
from .export.operator import STCHAIN_OT_export
from .props import WRITE_MODES, add_warning, clear_warnings
from .runner import (
    WORKER_MODULE,
    ProcessRunner,
    cancel_path,
    check_job,
    keep_result,
    new_job_dir,
    remove_job_dir,
    result_destination,
    worker_args,
)

_active: dict = {}  # "job" -> Controller of the running job (one at a time), "weights" likewise
CAMERA_NOT_ESTIMATED = "camera not estimated"
FOCAL_POORLY_DETERMINED = "focal length poorly determined"  # the engine's warning: the user should give the lens


def _status(context, ctl: Controller | None = None, message: str | None = None):
    st = context.window_manager.stchain_status
    if ctl is not None:
        st.running = not ctl.finished
        st.progress, st.stage = ctl.progress.fraction, ctl.progress.stage
        st.message = ctl.status_line() if message is None else message
    elif message is not None:
        st.message = message
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            area.tag_redraw()


def footage_path(props) -> str:
    if props.source == "CLIP":
        if props.clip is None:
            raise StchainError("Choose a Movie Clip as footage (4D Mesh panel > Footage)")
        return bpy.path.abspath(props.clip.filepath)
    path = props.filepath if props.source == "FILE" else props.directory
    if not path:
        raise StchainError("Choose the footage file or folder (4D Mesh panel > Footage)")
    return bpy.path.abspath(path)


def prepare(context, op) -> tuple[ProcessRunner, scene_writer.WriteOptions, Path]:
    """Check the job (settings, then weights), export the footage, write job.json and make the runner.
    Nothing in the scene changes; the job folder is removed again if anything here fails."""
    props = context.scene.stchain
    src = footage.probe(footage_path(props), fps_default=context.scene.render.fps / context.scene.render.fps_base)
    frames = (props.frame_first, props.frame_last) if props.use_frame_range else None
    job_dir = new_job_dir(prefs.user_dir("jobs"))
    try:
        spec = build_job(context, op, src, frames, job_dir)
        runner = _worker_for(context, op, spec, src, frames, job_dir)
    except BaseException:
        remove_job_dir(job_dir)
        raise
    return runner, write_options(props, src, spec), job_dir


def build_job(context, op, src, frames, job_dir: Path) -> JobSpec:
    """The JobSpec of the panel's settings, the preferences and the operator's own values, validated
    (every setting checked) before a frame is decoded. Touches no Blender data."""
    props, p = context.scene.stchain, prefs.get(context)
    return JobSpec(
        footage=str(job_dir / "footage"), out=str(job_dir / "result.safetensors"),
        weights=op.weights or prefs.weights_dir(context), masks=op.masks or None,
        method=props.method, preset=props.preset,
        device=op.device or (p.device if p else "auto"), precision=op.precision or (p.precision if p else "auto"),
        settings=_settings(op, props, frames, src, p.offload if p else "auto"),
        allow_random_weights=op.allow_random_weights,
    )


def _worker_for(context, op, spec: JobSpec, src, frames, job_dir: Path) -> ProcessRunner:
    """Weights checked by the worker's Python first, then the footage exported by Blender into the job
    folder, masks segmented first when the prompts ask for it; ``spec`` is saved as the worker reads it."""
    props = context.scene.stchain
    job = spec.save(job_dir / "job.json")
    module = os.environ.get("STCHAIN_WORKER_MODULE", WORKER_MODULE)
    python = prefs.python(context)
    path = prefs.pythonpath(python)
    check_job(job, module, python=python, pythonpath=path)  # weights before footage
    spec.footage = str(footage.export(src, frames, job_dir / "footage", mask=props.mask.lower(),
                                      blender_mask=props.mask_datablock))
    runner = ProcessRunner(worker_args(job, module), cancel_file=cancel_path(job), python=python, pythonpath=path)
    if props.mask == "SEGMENT" and not op.masks:  # masks from the prompts (cached, else segmented first)
        from .segment.jobs import masks_for_generate

        spec.masks, runner = masks_for_generate(context, src, frames, Path(spec.footage), job_dir, runner,
                                                op.weights, op.device, op.allow_random_weights)
    spec.save(job)
    return runner


def write_options(props, src, spec: JobSpec) -> scene_writer.WriteOptions:
    """How the result will be written: the panel's animation mode, the footage as camera background, and
    the job's record (the temporary frames and job folder are gone by then, so the footage is named)."""
    return scene_writer.WriteOptions(
        mode=props.write_mode, fps=src.fps, frame_offset=0,
        clip=props.clip.name if props.source == "CLIP" else None,
        footage=None if props.source == "CLIP" else (src.files[0] if src.files else src.path),
        metadata={"job": {**json.loads(spec.to_json()), "footage": src.path, "out": None},
                  "footage": src.path, "mask_source": props.mask.lower()},
    )


def _settings(op, props, frames, src, offload: str = "auto") -> dict:
    try:
        settings = json.loads(op.settings_json or "{}")
    except json.JSONDecodeError as e:
        raise StchainError(f"settings must be a JSON object: {e}") from None
    first = frames[0] if frames else 1
    if props.anchor_frame:
        if not first <= props.anchor_frame <= (frames[1] if frames else src.count):
            raise StchainError(f"Anchor frame {props.anchor_frame} is outside the frames used; set 0 (automatic) or a frame inside")
        settings["anchor_frame"] = props.anchor_frame - first
    if offload != "auto":
        settings.setdefault("offload", offload)  # the preference; a job's own settings win
    if props.source == "CLIP" and props.use_clip_camera and props.clip:
        settings.update(clip_camera_settings(props.clip))
    return {**settings, **footage_lens_settings(settings, src)}


def footage_lens_settings(settings: dict, src) -> dict:
    """The 35 mm equivalent in the footage's own metadata as the job's lens, when no focal is given and
    ``camera_footage_lens`` is not "ignore" (the job gets exported frames, which carry no metadata)."""
    given = {"camera_focal_px", "camera_focal_mm"} & set(settings)
    if given or settings.get("camera_footage_lens", "use") != "use" or src is None:
        return {}
    lens = footage_lens(src.path, src.kind, Path(src.files[0]) if src.files else None)
    if lens is None:
        return {}
    W, H = src.size
    return {"camera_focal_mm": lens.focal_px(W, H) * 36.0 / W, "camera_sensor_mm": 36.0,
            "camera_focal_source": "footage metadata"}


def apply_result(context, path: str, options: scene_writer.WriteOptions) -> dict:
    result = load_result(path)
    if not (options.cache_dir or bpy.data.filepath):
        options.cache_dir = str(Path(path).parent)  # unsaved .blend: the cache sits with the result
    footage_options = {"fps": options.fps, "footage": options.footage, "clip": options.clip}
    options.metadata = {**options.metadata, "result": str(path), "result_metadata": result.metadata,
                        "write": footage_options, "camera_status": camera_status(result.metadata)}
    return scene_writer.apply(result, context.scene, options)


def camera_status(metadata: dict) -> str:
    """'solved (median error N px)' or 'default camera: why' from the result's camera record."""
    cam = metadata.get("camera") or {}
    fallback = [w for w in cam.get("warnings", []) if "default" in w]
    if fallback:
        return fallback[0]
    err = cam.get("median_error_px")
    focal = focal_text(metadata)
    focal = f"; {focal}" if focal else ""
    return f"solved (median error {err:.1f} px{focal})" if isinstance(err, (int, float)) else f"solved{focal[1:]}"


def focal_text(metadata: dict) -> str:
    """'focal 1,100 px, 990-1,230 (solved)' (the 95% interval of a solved focal) or 'focal 1,234 px (clip
    camera)' from the result's camera record; '' for a default camera or an older result."""
    cam = metadata.get("camera") or {}
    focal, interval = cam.get("focal_px"), cam.get("focal_px_interval")
    if cam.get("status") != "estimated" or not isinstance(focal, (int, float)):
        return ""
    span = f", {interval[0]:,.0f}-{interval[1]:,.0f}" if interval else ""
    return f"focal {focal:,.0f} px{span} ({cam.get('focal_source', 'solved')})"


def clip_camera_settings(clip) -> dict:
    """The Movie Clip's own camera (Tracking > Camera: focal length and sensor width, as a tracking artist
    sets them) as the job's known lens."""
    cam = clip.tracking.camera
    return {"camera_focal_mm": float(cam.focal_length), "camera_sensor_mm": float(cam.sensor_width),
            "camera_focal_source": "clip camera"}


def previous_footage_options(scene) -> dict:
    """fps / footage / clip the current result was written with (so a re-apply keeps them)."""
    for id_block in scene_writer.owned_ids(scene):
        if isinstance(id_block, bpy.types.Object) and "stchain" in id_block:
            return json.loads(id_block["stchain"]).get("write", {})
    return {}


class _JobOptions:
    weights: StringProperty(name="Weights", subtype="DIR_PATH", description="Weights folder (empty = preferences)")
    device: StringProperty(name="Device", description="auto, cpu, cuda, cuda:N or mps (empty = preferences)")
    masks: StringProperty(name="Masks", subtype="DIR_PATH", description="Folder of mask images, one per frame (optional)")
    allow_random_weights: bpy.props.BoolProperty(name="Allow Random Weights", options={"HIDDEN", "SKIP_SAVE"},
                                                 description="Accept make-random test checkpoints (smoke tests)")
    settings_json: StringProperty(name="Settings", options={"HIDDEN", "SKIP_SAVE"},
                                  description="JSON object of setting overrides (scripts and the command line)")
    result_file: StringProperty(name="Result File", subtype="FILE_PATH", options={"HIDDEN", "SKIP_SAVE"},
                                description="Where the result is kept (default: NAME_4dmesh.safetensors "
                                            "beside the .blend)")
    precision: StringProperty(name="Precision", description="auto, fp32, bf16 or fp16 (empty = preferences)")
    quiet: bpy.props.BoolProperty(name="Quiet", options={"HIDDEN", "SKIP_SAVE"},
                                  description="Leave the error line to the caller (the headless entry prints it once)")
    json_lines: bpy.props.BoolProperty(name="JSON Progress", options={"HIDDEN", "SKIP_SAVE"},
                                       description="Print progress as JSON lines when blocking "
                                                   "(else a bar at a terminal)")


class _Driven:
    """One job, two drivers: ``execute`` blocks (scripts, ``-b``); ``invoke`` runs modal with a timer.

    Subclasses give ``_key`` (slot in ``_active``), ``_prepare(context) -> runner`` (raise
    StchainError to refuse) and ``_done(context, controller) -> {'FINISHED'} | {'CANCELLED'}``.
    """

    _key = "job"
    _echo = False  # print events as JSON lines while blocking (headless progress)

    def execute(self, context):
        try:
            runner = self._prepare(context)
        except StchainError as e:
            return self._fail(context, str(e))
        ctl = _active[self._key] = Controller()  # registered so Cancel / Free GPU reach a blocking run too
        echo = Printer(getattr(self, "json_lines", False) or None) if self._echo else None

        def on_event(event):
            ctl.handle(event)
            if echo is not None and event.get("event") not in ("done", "error", "cancelled"):
                echo(event)  # the final line is the operator's own report (printed once)

        try:
            ctl.start(runner)
            try:
                runner.wait(on_event=on_event)
            except KeyboardInterrupt:
                ctl.cancel()
                runner.wait(on_event=on_event)
            return self._done(context, ctl)
        finally:
            self._cleanup()

    def invoke(self, context, event):
        if bpy.app.background:  # modal handlers and timers never run there
            return self.execute(context)
        try:
            runner = self._prepare(context)
        except StchainError as e:
            return self._fail(context, str(e))
        ctl = _active[self._key] = Controller()
        ctl.start(runner)
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        _status(context, ctl)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        ctl = _active[self._key]
        if event.type == "ESC" and event.value == "PRESS":
            ctl.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        ctl.poll()
        _status(context, ctl)
        if not ctl.finished:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        try:
            return self._done(context, ctl)
        finally:
            self._cleanup()

    def _cleanup(self):
        """Remove what the job left (every exit path: done, failed, cancelled)."""

    def _fail(self, context, message):
        context.window_manager.stchain_status.running = False
        _status(context, None, message)
        if not getattr(self, "quiet", False):
            self.report({"ERROR"}, message)
        return {"CANCELLED"}


class STCHAIN_OT_generate(_JobOptions, _Driven, bpy.types.Operator):
    """Generate an animated mesh and a matching camera from the footage (runs in the background; Esc cancels)"""

    bl_idname = "stchain.generate"
    bl_label = "Generate 4D Mesh"
    bl_options = {"REGISTER"}  # no UNDO: a redo panel would re-run the whole model
    _echo = True

    @classmethod
    def poll(cls, context):
        job = _active.get("job")
        return job is None or job.finished

    _job_dir = None

    def _prepare(self, context):
        status = context.window_manager.stchain_status
        clear_warnings(status)
        status.camera = ""
        status.mask_source = context.scene.stchain.mask.lower()
        runner, self._options, self._job_dir = prepare(context, self)
        return runner

    def _cleanup(self):
        remove_job_dir(self._job_dir)
        self._job_dir = None

    def _done(self, context, ctl):
        status = context.window_manager.stchain_status
        _keep_warnings(self, status, ctl)  # camera warnings arrive as the worker's warning events
        if ctl.state != State.DONE:
            return self._fail(context, ctl.message)
        try:
            dest = Path(bpy.path.abspath(self.result_file)) if self.result_file else \
                result_destination(bpy.data.filepath, prefs.user_dir("results"))
            kept = keep_result(ctl.result_path, dest)
            written = apply_result(context, str(kept), self._options)
        except (StchainError, ValueError, OSError) as e:
            return self._fail(context, f"The result could not be applied: {e}")
        status.result = str(kept)
        status.camera = focal_text(self._options.metadata.get("result_metadata") or {})
        focal = f" ({status.camera})" if status.camera else ""
        _status(context, ctl, f"Created {written['mesh']} and {written['camera']}{focal}; result kept at {kept}")
        self.report({"INFO"}, status.message)
        if not bpy.app.background:
            bpy.ops.ed.undo_push(message="Generate 4D Mesh")  # the whole apply is one undo step
        return {"FINISHED"}


def _keep_warnings(op, status, ctl: Controller) -> None:
    """Keep the job's warnings for the panel (until the next run); a default camera also goes to the
    Info report."""
    for w in ctl.warnings:
        add_warning(status, w)
        if w.startswith(CAMERA_NOT_ESTIMATED) or FOCAL_POORLY_DETERMINED in w:
            op.report({"WARNING"}, w)


class STCHAIN_OT_cancel(bpy.types.Operator):
    """Stop the running 4D mesh job; the scene is left unchanged"""

    bl_idname = "stchain.cancel"
    bl_label = "Cancel 4D Mesh Job"

    @classmethod
    def poll(cls, context):
        return any(not c.finished for c in _active.values())

    def execute(self, context):
        for ctl in _active.values():
            ctl.cancel()
        return {"FINISHED"}


class STCHAIN_OT_apply_result(bpy.types.Operator):
    """Apply a saved 4D mesh result to the scene again, with other write options"""

    bl_idname = "stchain.apply_result"
    bl_label = "Apply 4D Mesh Result"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Result", subtype="FILE_PATH", description="result.safetensors to apply")
    write_mode: EnumProperty(name="Animation", items=WRITE_MODES, default="auto", description="How the animation is stored")
    frame_offset: IntProperty(name="Frame Offset", default=0, description="Shift the animation by this many frames")

    def invoke(self, context, event):
        self.filepath = self.filepath or context.window_manager.stchain_status.result
        return self.execute(context)

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        if not Path(path).is_file():
            self.report({"ERROR"}, f"No result file at {path or '(none)'}: generate first or choose a file")
            return {"CANCELLED"}
        options = scene_writer.WriteOptions(mode=self.write_mode, frame_offset=self.frame_offset,
                                            **previous_footage_options(context.scene))
        try:
            written = apply_result(context, path, options)
        except (StchainError, ValueError, OSError) as e:
            self.report({"ERROR"}, f"The result could not be applied: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Applied {path} to {written['mesh']}")
        return {"FINISHED"}


class STCHAIN_OT_weights(_Driven, bpy.types.Operator):
    """Check the model weights or download them (downloads need Blender's Online Access)"""

    bl_idname = "stchain.weights"
    bl_label = "4D Mesh Weights"
    _key = "weights"

    action: EnumProperty(items=[("check", "Check", "Report which weights are present and valid"),
                                ("download", "Download", "Download the official weights (licences apply)")])

    @classmethod
    def description(cls, context, properties):
        if properties.action == "download":
            return "Download the official TripoSG, ActionMesh and DINOv2 weights (needs Online Access)"
        return "Report which weights are present and whether they are complete"

    def _prepare(self, context):
        if self.action == "download" and not bpy.app.online_access:
            raise StchainError("Online Access is off: enable it in Preferences > System > Network to download")
        args = ["-m", prefs.PACKAGE_DIR.name, "weights", self.action]
        if prefs.weights_dir(context):
            args.append(prefs.weights_dir(context))  # the weights root: DIR (as `weights check DIR`)
        return ProcessRunner(args, python=prefs.python(context), pythonpath=prefs.pythonpath(prefs.python(context)))

    def _done(self, context, ctl):
        _status(context, ctl, "\n".join(ctl.log) or ctl.message)
        if ctl.state != State.DONE:
            return self._fail(context, ctl.message)
        self.report({"INFO"}, ctl.log[-1] if ctl.log else "done")
        return {"FINISHED"}


class STCHAIN_OT_free_gpu(bpy.types.Operator):
    """Stop the model worker so its GPU memory goes back to Blender and other programs"""

    bl_idname = "stchain.free_gpu"
    bl_label = "Free GPU Memory"

    def execute(self, context):
        stopped = cancel_all()
        self.report({"INFO"}, f"Stopped {stopped} worker(s)" if stopped else "No worker holds GPU memory")
        return {"FINISHED"}


@bpy.app.handlers.persistent
def cancel_all(*_args) -> int:
    """Stop every running job (Free GPU memory, unregister, loading another file)."""
    running = [ctl for ctl in _active.values() if not ctl.finished]
    for ctl in running:
        ctl.cancel()
    return len(running)


CLASSES = (STCHAIN_OT_generate, STCHAIN_OT_cancel, STCHAIN_OT_apply_result, STCHAIN_OT_weights, STCHAIN_OT_free_gpu,
           STCHAIN_OT_export)
