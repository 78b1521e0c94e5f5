"""``--blend``: a finished result as ``NAME.blend`` next to it, through the existing scene writer;
``--export abc,usdc``: as NAME.abc, NAME.usdc through the ``export`` command (``cli_export``).

bpy runs in a child process (``python -m blender_stchain.batch.blend RESULT OUT``): it wants a main thread
of its own and its memory goes when the file is saved. The .blend is made from the result at its final
path (the path the scene records), under a temporary name, and renamed when complete; a cancel or a
failure removes it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..cli_export import in_child

TIMEOUT_S = 1800


def write_blend(result: Path, blend: Path, cancel=lambda: False) -> Path:
    tmp = blend.with_name(f".{blend.name}.tmp-{os.getpid()}")
    try:
        in_child([sys.executable, "-m", __name__, str(result), str(tmp)], blend.name, cancel, TIMEOUT_S)
        os.replace(tmp, blend)
    finally:
        for p in (tmp, Path(f"{tmp}@")):  # Blender saves through FILE@ first
            p.unlink(missing_ok=True)
    return blend


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
