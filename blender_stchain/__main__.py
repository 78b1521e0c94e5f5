import os
import sys

# before torch is imported: an operation MPS lacks runs on the CPU instead of stopping the run
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .cli import main  # noqa: E402

sys.exit(main())
