import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STCHAIN_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data"
os.environ.setdefault("STCHAIN_SHARED_DIR", str(SHARED))  # the data folder the package's optional defaults read
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def pytest_sessionfinish(session, exitstatus):
    session.config.stchain_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The Blender 4.2 matrix: after its glTF tests the bpy 4.2 module crashes in its own teardown, which would
    turn a green run into a segfault; end the process here with pytest's status once every report is out."""
    from blender_stchain.bl import crashes_at_exit, exit_process

    if crashes_at_exit():
        exit_process(getattr(config, "stchain_exitstatus", 1))


def _random_weights(tmp_path_factory, size):
    """Made here when this interpreter has torch; in the Blender-only venvs (4.2 / 5.2 matrices) by the
    worker's interpreter (``STCHAIN_WORKER_PYTHON``), as the extension itself would."""
    out = tmp_path_factory.mktemp(f"weights-{size}")
    try:
        from blender_stchain.engine.weights.random_checkpoints import make_random  # torch: only when asked for
    except ModuleNotFoundError:
        import subprocess

        python = os.environ.get("STCHAIN_WORKER_PYTHON")
        if not python:
            pytest.skip("no torch in this interpreter and no STCHAIN_WORKER_PYTHON to make random weights")
        subprocess.run([python, "-m", "blender_stchain", "weights", "make-random", str(out), "--size", size],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)
        return out
    return make_random(out, size=size, seed=0)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random checkpoints in the official layouts, made once per session (smoke-test weights)."""
    return _random_weights(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory):
    return _random_weights(tmp_path_factory, "small")


# A clone without the data folder beside it (README's second command): the tests that read real footage or the reference
# fixtures are skipped, with the reason said once in the header and on each skip; everything else runs.
FIXTURES = Path(os.environ.get("STCHAIN_FIXTURES_DIR", SHARED / "fixtures" / "reference"))
NO_SHARED = f"needs {SHARED} (real footage, reference fixtures); set STCHAIN_SHARED_DIR"


def pytest_report_header(config):
    return None if DATA.is_dir() else f"{SHARED} not found: tests that read it are skipped"


def pytest_collection_modifyitems(config, items):
    if DATA.is_dir() and (FIXTURES / "manifest.json").is_file():
        return
    uses = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in uses:
            text = path.read_text(encoding="utf-8")
            uses[path] = any(name in text for name in ("DATA", "SHARED", "fixtures_dir", "manifest(", "load_case"))
        if uses[path]:
            item.add_marker(pytest.mark.skip(reason=NO_SHARED))
