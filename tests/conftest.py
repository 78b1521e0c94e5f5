import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STCHAIN_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _random_weights(tmp_path_factory, size):
    from blender_stchain.engine.weights.random_checkpoints import (
        make_random,  # torch: imported only when asked for
    )

    return make_random(tmp_path_factory.mktemp(f"weights-{size}"), size=size, seed=0)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random checkpoints in the official layouts, made once per session (smoke-test weights)."""
    return _random_weights(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory):
    return _random_weights(tmp_path_factory, "small")
