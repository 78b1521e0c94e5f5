"""``python -m blender_stchain.batch.blend RESULT BLEND``: a result as a .blend via the scene writer.

A child process of the batch worker: bpy gets a main thread of its own and its memory goes when the
file is saved. The caller renames BLEND into place (it picks a temporary name).
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m blender_stchain.batch.blend RESULT.safetensors OUT.blend\n")
        return 1
    from ..bl.headless import write_blend_file

    write_blend_file(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
