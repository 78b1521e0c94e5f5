"""``stchain.runtime``: one operator for the four GPU runtime actions. The work runs in a separate
process (``python -m blender_stchain runtime ACTION``) so Blender never imports torch and the
Cancel button stops a download at once; the runtime is always for Blender's own interpreter."""

from __future__ import annotations

import sys
import time

import bpy
from bpy.props import EnumProperty

from ...contracts.errors import StchainError
from .. import prefs
from ..controller import State
from ..ops import _Driven, _active, _status, cancel_all
from ..runner import ProcessRunner

ACTIONS = [("plan", "Plan", "Which GPU runtime fits this computer, and what it downloads"),
           ("install", "Install", "Download, verify and activate the planned GPU runtime (needs Online Access)"),
           ("check", "Check", "Verify the active GPU runtime again in a fresh process"),
           ("remove", "Remove", "Delete the active GPU runtime (a running job is stopped first)")]


def stop_workers(timeout_s: float = 10.0) -> None:
    """Stop every running job and wait until its process is gone (Windows cannot delete loaded DLLs)."""
    cancel_all()
    deadline = time.monotonic() + timeout_s
    while any(getattr(c.runner, "alive", False) for c in _active.values()) and time.monotonic() < deadline:
        time.sleep(0.1)


class STCHAIN_OT_runtime(_Driven, bpy.types.Operator):
    """Plan, install, check or remove the GPU PyTorch runtime the model runs on"""

    bl_idname = "stchain.runtime"
    bl_label = "GPU Runtime"
    _key = "runtime"
    _echo = True  # headless: the install's progress on the terminal

    action: EnumProperty(items=ACTIONS)

    @classmethod
    def description(cls, context, properties):
        return dict((a, d) for a, _, d in ACTIONS)[properties.action]

    def _prepare(self, context):
        if self.action == "install" and not bpy.app.online_access:
            raise StchainError("Online Access is off: enable it in Preferences > System > Network to install")
        busy = [k for k, c in _active.items() if not c.finished]
        if busy and self.action == "install":
            raise StchainError("a job is running: wait for it or cancel it, then install")
        if self.action == "remove":
            stop_workers()
        root = prefs.runtime_root()
        args = ["-m", prefs.PACKAGE_DIR.name, "runtime", self.action, "--root", str(root)]
        cancel = root / ".cancel"
        if self.action == "install":
            args += ["--json", "--cancel-file", str(cancel)]
        return ProcessRunner(args, cancel_file=cancel, python=sys.executable, pythonpath=[prefs.PACKAGE_DIR.parent])

    def _done(self, context, ctl):
        if self.action in ("install", "remove"):
            (prefs.user_dir("cache") / "devices.json").unlink(missing_ok=True)  # the devices changed
        lines = [line for line in ctl.log if line.strip()]
        if ctl.state != State.DONE:
            return self._fail(context, ctl.message)
        if ctl.result_path:
            lines.append(f"active: {prefs.job_runtime(context)}")
        _status(context, ctl, "\n".join(lines) or "done")
        self.report({"INFO"}, lines[-1] if lines else "done")
        return {"FINISHED"}


CLASSES = (STCHAIN_OT_runtime,)
