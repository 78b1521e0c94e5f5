import os

# before torch is imported: an operation MPS lacks runs on the CPU instead of stopping the run
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .bl import exit_process  # noqa: E402
from .cli import main  # noqa: E402

exit_process(main())  # not sys.exit: bpy 4.2 crashes in its own teardown after a glTF export (bl.crashes_at_exit)
