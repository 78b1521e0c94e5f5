"""Results as Alembic, USD and glTF files, written by Blender's own exporters (docs/exports.md).

``export_result`` builds the scene the scene writer builds from a result file, in an empty scene,
and exports it: Alembic and USD from a point-cached mesh (the exporter evaluates the Mesh Cache
modifier frame by frame, so a long clip never has all its frames in memory), glTF from shape keys
(morph targets: the only vertex animation glTF has). ``formats`` holds the exporter settings (bpy), ``paths``
the output checks; ``source`` reads the result's frames on demand. Main thread only (bpy).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .paths import FORMATS, check_target, format_of
from .source import ResultView, open_result

__all__ = ["FORMATS", "ResultView", "check_target", "export_result", "format_of", "open_result"]


def export_result(view: ResultView, outs, warn=print) -> list[Path]:
    """Write ``view`` to every path of ``outs`` (formats by extension); returns the paths written."""
    import bpy

    from .. import scene_writer
    from .formats import export_objects, result_objects

    targets = [check_target(o) for o in outs]  # every target checked before any work
    written = []
    with tempfile.TemporaryDirectory(prefix="stchain-export-cache-") as cache:
        for mode, group in (("pc2", [t for t in targets if format_of(t) != "gltf"]),
                            ("shape_keys", [t for t in targets if format_of(t) == "gltf"])):
            if not group:
                continue
            bpy.ops.wm.read_factory_settings(use_empty=True)
            scene = bpy.context.scene
            options = scene_writer.WriteOptions(mode=mode, cache_dir=cache, fps=view.fps, tracks=False,
                                                metadata={"result": str(view.path), "result_metadata": view.metadata})
            scene_writer.apply(view, scene, options)
            objects = result_objects(scene)
            written += [export_objects(scene, objects, t, warn) for t in group]
    return written
