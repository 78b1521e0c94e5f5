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
