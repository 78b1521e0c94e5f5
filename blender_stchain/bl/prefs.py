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
    own interpreter, every site-packages in use (Blender's numpy, the extensions' ``.local`` folder
    holding the bundled wheels). Another interpreter keeps its own packages: never mix the two."""
    own = worker_python is None or os.path.realpath(worker_python) == os.path.realpath(sys.executable)
    sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))] if own else []
    return [str(PACKAGE_DIR.parent)] + sites


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
        context.window_manager.stchain_status.message = "\n".join(lines)  # the preferences show these lines
        self.report({"INFO"}, " | ".join(lines))  # the same text as `python -m blender_stchain devices`
        return {"FINISHED"}


CLASSES = (STCHAIN_AP_preferences, STCHAIN_OT_detect_devices)
