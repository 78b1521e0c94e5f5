"""Add-on preferences and the worker runtime they describe (interpreter, paths, devices).

Blender never imports torch: the device list comes from a probe run in the worker's interpreter,
cached in the extension's user folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..runtime import store

PACKAGE = __package__.rpartition(".")[0]  # "blender_stchain" or "bl_ext.<repo>.blender_stchain"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROBE = ("-m", "blender_stchain", "devices", "--json")  # the command line's report, in the worker's Python
_DEFAULT_DEVICES = [("auto", "Automatic", "Best available device (press Detect Devices to list them)"),
                    ("cpu", "CPU", "Processor (slow)")]
_device_items = list(_DEFAULT_DEVICES)  # EnumProperty callbacks must keep their list referenced


def user_dir(name: str) -> Path:
    """A per-extension user folder (kept across updates); a temp folder for legacy installs."""
    try:
        return Path(bpy.utils.extension_path_user(PACKAGE, path=name, create=True))
    except ValueError:
        import tempfile

        path = Path(tempfile.gettempdir()) / "blender_stchain" / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def _devices(self, context):
    global _device_items
    cache = user_dir("cache") / "devices.json"
    if cache.is_file():
        try:
            _device_items = [tuple(x) for x in json.loads(cache.read_text())]
        except (ValueError, TypeError):
            _device_items = list(_DEFAULT_DEVICES)
    return _device_items


class STCHAIN_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    weights_dir: StringProperty(name="Weights Folder", subtype="DIR_PATH",
                                description="Folder holding the TripoSG, ActionMesh and DINOv2 weights (empty = the extension's user folder)")
    device: EnumProperty(name="Device", items=_devices, description="Where the model runs")
    precision: EnumProperty(name="Precision", default="auto", description="Numeric precision of the model",
                            items=[("auto", "Automatic", "bf16 on recent GPUs, fp32 elsewhere"), ("fp32", "FP32", "Full precision"),
                                   ("bf16", "BF16", "Half the memory, recent GPUs"), ("fp16", "FP16", "Half the memory, older GPUs")])
    offload: EnumProperty(name="Offload", default="auto", description="Keep only the running model on the GPU",
                          items=[("auto", "Automatic", "When free GPU memory is short of a run's peak"),
                                 ("none", "None", "Every model stays on the GPU (fastest)"),
                                 ("models", "Models", "Only the running model on the GPU, the rest in RAM (8 GB cards)")])
    keep_worker_warm: BoolProperty(name="Keep Worker Warm", default=False,
                                   description="Keep the model loaded between jobs (faster re-runs, holds GPU memory)")
    runtime_python: StringProperty(name="Runtime Python", subtype="FILE_PATH",
                                   description="Optional Python of a separate runtime (e.g. with CUDA torch); empty = Blender's own")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "weights_dir")
        row = col.row(align=True)
        row.operator("stchain.weights", text="Check Weights", icon="CHECKMARK").action = "check"
        sub = row.row(align=True)
        sub.enabled = bpy.app.online_access
        sub.operator("stchain.weights", text="Download Weights", icon="IMPORT").action = "download"
        if not bpy.app.online_access:
            col.label(text="Downloads need Online Access (Preferences > System > Network)", icon="INFO")
        row = col.row(align=True)
        row.prop(self, "device")
        row.operator("stchain.detect_devices", text="", icon="FILE_REFRESH")
        col.prop(self, "precision")
        col.prop(self, "offload")
        col.prop(self, "keep_worker_warm")
        col.operator("stchain.free_gpu", icon="X")
        col.prop(self, "runtime_python")
        draw_runtime(col.box(), context)
        status = context.window_manager.stchain_status
        if status.message:
            for line in status.message.splitlines()[-8:]:
                col.label(text=line)


def get(context):
    """The preferences, or None when the package was registered without addon_utils (tests, bpy)."""
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon else None


def weights_dir(context) -> str | None:
    p = get(context)
    if p is not None and p.weights_dir:
        return bpy.path.abspath(p.weights_dir)
    return str(user_dir("weights")) if PACKAGE.startswith("bl_ext.") else None


def python(context) -> str:
    """The worker's interpreter: the preference, else ``STCHAIN_WORKER_PYTHON``, else Blender's own."""
    p = get(context)
    if p is not None and p.runtime_python:
        return bpy.path.abspath(p.runtime_python)
    return os.environ.get("STCHAIN_WORKER_PYTHON") or sys.executable


def pythonpath(worker_python: str | None = None) -> list[str]:
    """The package's parent (so ``-m blender_stchain...`` resolves) plus, when the worker is Blender's
    own interpreter, the active GPU runtime (ahead of the bundled wheels, whose CPU torch it replaces)
    and every site-packages in use (Blender's numpy, the extensions' ``.local`` folder holding the
    bundled wheels). Another interpreter keeps its own packages: never mix the two."""
    own = worker_python is None or os.path.realpath(worker_python) == os.path.realpath(sys.executable)
    sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))] if own else []
    gpu = store.active(runtime_root()) if own else None
    return [str(PACKAGE_DIR.parent)] + ([str(gpu.site)] if gpu else []) + sites


def runtime_root() -> Path:
    """Where GPU runtimes are installed: the extension's user folder (``STCHAIN_RUNTIMES`` overrides)."""
    return Path(os.environ["STCHAIN_RUNTIMES"]) if os.environ.get("STCHAIN_RUNTIMES") else user_dir("runtimes")


def job_runtime(context) -> str:
    """Which runtime and device the next job uses (the panel shows it before the job starts)."""
    p = get(context)
    if p is not None and p.runtime_python:
        return f"Runtime: custom Python {Path(p.runtime_python).name}, device {p.device}"
    gpu = store.active(runtime_root())
    chosen = p.device if p is not None else "auto"
    if gpu is None:
        return "Runtime: bundled PyTorch, device: " + ("CPU" if chosen in ("auto", "cpu") else chosen)
    named = {d[0]: d[1] for d in _device_items}
    device = "CPU" if chosen == "cpu" else named.get(chosen) if chosen != "auto" else None
    check = gpu.info.get("check", {})
    device = device or f"{check.get('device_name', 'GPU')} ({check.get('dtype', '?')})"
    return f"Runtime: {gpu.folder}, device: {device}"


def install_hint() -> str:
    """What to install for a GPU, said by Detect Devices when the worker sees none."""
    from ..contracts.errors import StchainError
    from ..runtime import plan

    try:
        found = plan.choose_build(plan.probe(), plan.load_table(os.environ.get("STCHAIN_RUNTIME_TABLE")))
    except StchainError as e:
        return str(e)
    if found.build is None:
        return found.reason
    return (f"{found.reason}: install it in Preferences > Add-ons > 4D Mesh > GPU Runtime "
            f"({found.build.folder}, {plan.gb(found.build.download_bytes)} download)")


def draw_runtime(box, context) -> None:
    box.label(text="GPU Runtime", icon="SYSTEM")
    box.label(text=job_runtime(context))
    row = box.row(align=True)
    for action, icon in (("plan", "VIEWZOOM"), ("install", "IMPORT"), ("check", "CHECKMARK"), ("remove", "TRASH")):
        sub = row.row(align=True)
        sub.enabled = action != "install" or bpy.app.online_access
        sub.operator("stchain.runtime", text=action.title(), icon=icon).action = action
    status = context.window_manager.stchain_status
    if status.running:
        box.progress(factor=status.progress, type="BAR", text=status.message or status.stage)
        box.operator("stchain.cancel", icon="CANCEL")


class STCHAIN_OT_detect_devices(bpy.types.Operator):
    """List the devices the model can use (runs a probe in the worker's Python, once)"""

    bl_idname = "stchain.detect_devices"
    bl_label = "Detect Devices"

    def execute(self, context):
        exe = python(context)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath(exe)))
        try:
            out = subprocess.run([exe, *PROBE], env=env, capture_output=True, text=True, timeout=120)
            found = json.loads(out.stdout.strip().splitlines()[-1])
            devices, lines = found["items"], found["lines"]
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError, KeyError, TypeError):
            self.report({"ERROR"}, "Could not probe devices: the runtime's torch did not start")
            return {"CANCELLED"}
        (user_dir("cache") / "devices.json").write_text(json.dumps(devices))
        if len(devices) <= 2:  # auto and cpu only: say what would give this machine a GPU
            lines = [*lines, f"No GPU in this runtime: {install_hint()}"]
        context.window_manager.stchain_status.message = "\n".join(lines)  # the preferences show these lines
        self.report({"INFO"}, " | ".join(lines))  # the text of `python -m blender_stchain devices`, plus the hint
        return {"FINISHED"}


CLASSES = (STCHAIN_AP_preferences, STCHAIN_OT_detect_devices)
