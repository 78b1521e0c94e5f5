"""register()/unregister(): classes, properties, menu entries and the ``blender -c stchain`` command.

Nothing here imports torch, reads files, touches the GPU or the network.
"""

import bpy

from . import headless, ops, panels, prefs, props
from .gpu import ops as gpu_ops
from .segment import ops as segment_ops

CLASSES = props.CLASSES + prefs.CLASSES + ops.CLASSES + segment_ops.CLASSES + gpu_ops.CLASSES + panels.CLASSES
_cli = []


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.register_props()
    for name in panels.MENUS:
        getattr(bpy.types, name).append(panels.menu_entry)
    bpy.app.handlers.load_pre.append(ops.cancel_all)
    if hasattr(bpy.utils, "register_cli_command"):
        _cli.append(bpy.utils.register_cli_command("stchain", headless.cli_command))


def unregister():
    while _cli:
        bpy.utils.unregister_cli_command(_cli.pop())
    for name in panels.MENUS:
        getattr(bpy.types, name).remove(panels.menu_entry)
    if ops.cancel_all in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(ops.cancel_all)
    ops.cancel_all()
    ops._active.clear()
    props.unregister_props()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
