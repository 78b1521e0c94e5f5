"""Blender side: operators, panels, preferences, the worker runner, footage export and the scene writer.
Never imports torch; bpy itself only where Blender data is touched (``require_bpy`` says how to get it)."""

from __future__ import annotations

GET_BPY = ("pip install bpy==5.0.1 into a Python 3.11 (bpy==5.2.3 for 3.13; scripts/setup.sh makes such a .venv), "
           "or run it in Blender: blender -b -P scripts/stchain_run.py -- OPTIONS")


def require_bpy(purpose: str, load: bool = True):
    """The bpy module, or one line saying how to get it (this Python has none: a plain install).
    ``load=False`` only checks that it is there (a command that uses it later, in another process)."""
    import importlib.util

    from ..contracts.errors import StchainError

    try:
        found = importlib.util.find_spec("bpy") is not None
    except ValueError:  # a module entry without a spec (blocked or half-imported)
        found = False
    if not found:
        raise StchainError(f"{purpose} needs Blender's bpy module, which this Python lacks: {GET_BPY}")
    if load:
        import bpy

        return bpy
    return None


def crashes_at_exit() -> bool:
    """True where the loaded bpy is the PyPI 4.2 module, which crashes in its own teardown (SIGSEGV at
    interpreter exit) once its glTF exporter has run, although every file is written and closed."""
    import sys

    bpy = sys.modules.get("bpy")
    return bpy is not None and tuple(bpy.app.version[:2]) < (4, 3)


def exit_process(code: int) -> None:
    """Exit with ``code``; where bpy would crash in its teardown, end here after flushing instead."""
    import os
    import sys

    if crashes_at_exit():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
