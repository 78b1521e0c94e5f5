"""The headless entry for callers that may hold an unregistered package (``python -m
blender_stchain OPTIONS`` with the PyPI bpy module, ``-P scripts/stchain_run.py`` without the
extension installed): registers for the job and unregisters after, then runs ``headless.main``;
``export RESULT --out FILE`` runs the ``export`` command instead (no job, nothing registered).
"""

from __future__ import annotations

from . import require_bpy


def main(argv: list[str]) -> int:
    if argv[:1] == ["export"]:  # `blender -b -P scripts/stchain_run.py -- export RESULT --out X.abc`
        return _export(argv[1:])
    bpy = require_bpy("writing a .blend")

    from . import headless, registration

    if hasattr(bpy.types.Scene, "stchain"):
        return headless.main(argv)
    registration.register()
    try:
        return headless.main(argv)
    finally:
        registration.unregister()  # also avoids bpy 4.2's crash at exit with add-on menus registered


def _export(argv: list[str]) -> int:
    import sys

    from ..cli_export import main as export_main
    from ..contracts.errors import StchainError, exit_code
    from ..contracts.options import one_line

    try:
        return export_main(argv)
    except (StchainError, KeyboardInterrupt) as e:
        print(one_line(e if str(e) else "interrupted"), file=sys.stderr, flush=True)
        return exit_code(e)
