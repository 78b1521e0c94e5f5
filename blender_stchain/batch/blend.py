"""``--blend``: a finished result as ``NAME.blend`` next to it, through the existing scene writer.

bpy runs in a child process (``python -m blender_stchain.batch.blend RESULT OUT``): it wants a main thread
of its own and its memory goes when the file is saved. The .blend is made from the result at its final
path (the path the scene records), under a temporary name, and renamed when complete; a cancel or a
failure removes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..contracts.errors import Cancelled, StchainError

TIMEOUT_S = 1800


def write_blend(result: Path, blend: Path, cancel=lambda: False) -> Path:
    tmp = blend.with_name(f".{blend.name}.tmp-{os.getpid()}")
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: bpy's chatter cannot fill it and stall
        proc = subprocess.Popen([sys.executable, "-m", __name__, str(result), str(tmp)],
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while proc.poll() is None:
                if cancel() or time.monotonic() > deadline:
                    raise Cancelled() if cancel() else StchainError(f"writing {blend.name} took over {TIMEOUT_S} s")
                time.sleep(0.1)
            if proc.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines() or ["no message"]
                raise StchainError(f"writing {blend.name} failed: {lines[-1]}")
            os.replace(tmp, blend)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
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
