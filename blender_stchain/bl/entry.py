"""The headless entry for callers that may hold an unregistered package (``python -m
blender_stchain OPTIONS`` with the PyPI bpy module, ``-P scripts/stchain_run.py`` without the
extension installed): registers for the job and unregisters after, then runs ``headless.main``.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    import bpy

    from . import headless, registration

    if hasattr(bpy.types.Scene, "stchain"):
        return headless.main(argv)
    registration.register()
    try:
        return headless.main(argv)
    finally:
        registration.unregister()  # also avoids bpy 4.2's crash at exit with add-on menus registered
