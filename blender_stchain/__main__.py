import os
import sys

# before torch is imported: an operation MPS lacks runs on the CPU instead of stopping the run
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .cli import main  # noqa: E402


def _exit(code: int) -> None:
    """Exit with ``code``. The PyPI bpy 4.2 module crashes in its own teardown (SIGSEGV at interpreter exit)
    once its glTF exporter has run, although every file is written and closed: there the process ends
    here, after flushing, instead of in that teardown."""
    bpy = sys.modules.get("bpy")
    if bpy is not None and tuple(bpy.app.version[:2]) < (4, 3):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


_exit(main())
