"""Headless runs inside Blender:

    blender -b [file.blend] -P scripts/stchain_run.py -- --footage PATH --out OUT.blend [options]

Uses the installed extension when there is one (enabling it if needed), else this repository's
package. Options: see ``blender_stchain.bl.headless`` (docs/architecture.md 3). Exit code 0 on success.
"""

import importlib
import sys
from pathlib import Path


def _headless():
    import bpy  # noqa: F401, I001 (first: inside Blender it is loaded already; with PyPI bpy it makes addon_utils importable)
    import addon_utils  # isort: skip

    for mod in addon_utils.modules():
        if mod.__name__.rpartition(".")[2] == "blender_stchain":
            addon_utils.enable(mod.__name__, default_set=False)
            return importlib.import_module(mod.__name__ + ".bl.entry")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    return importlib.import_module("blender_stchain.bl.entry")


if __name__ == "__main__":
    sys.exit(_headless().main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []))
