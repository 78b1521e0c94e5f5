import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STCHAIN_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
