"""The installed tier: the built zip (this machine's platform and Python, with its wheels), installed by
Blender's own extension installer into a fresh Python that has only the bpy module, then the real worker on
tiny random weights. See docs/extension.md.

The bpy-only Python is ``.venv-installed`` (``python3.11 -m venv`` + ``pip install bpy==BPY``), made once and
reused; ``STCHAIN_INSTALLED_PYTHON`` names another base interpreter. Every case runs ``driver.py`` in that
Python with HOME set to the tier's user folder, no ``STCHAIN_WORKER_PYTHON`` and no PYTHONPATH: the worker is
Blender's own interpreter with the zip's wheels, as a user has it.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from tests.conftest import REPO

# The Blender whose Python the tier installs into: the development venv's 5.0 by default, 4.2 LTS in the CI
# matrix (both Python 3.11, so the same cp311 zip). 5.1+ (Python 3.13) would need the cp313 CPU torch wheel,
# which only PyTorch's own index serves.
BPY = os.environ.get("STCHAIN_INSTALLED_BPY", "5.0.1")
PYTHON_LINE = "3.11"
VENV = REPO / (".venv-installed" if BPY == "5.0.1" else f".venv-installed-{BPY}")
# bpy's own dependencies at the versions CI pins (another bpy: unpinned)
PINS = {"5.0.1": ["-c", str(REPO / "vendor" / "dev-constraints.txt")],
        "4.2.23": ["-c", str(REPO / "vendor" / "dev-constraints-bpy42.txt")]}.get(BPY, [])
HERE = REPO / "tests" / "installed"
DRIVER = HERE / "driver.py"
CLEARED = ("STCHAIN_WORKER_PYTHON", "STCHAIN_WORKER_MODULE", "STCHAIN_WEIGHTS", "PYTHONPATH", "VIRTUAL_ENV",
           "XDG_CONFIG_HOME", "PYTHONHOME")
ABSENT = ("PIL", "av", "torch", "pytest", "scipy", "transformers", "safetensors")  # what the fresh Python lacks


def extension_platform() -> str:
    machine = platform.machine().lower()
    key = {("linux", "x86_64"): "linux-x64", ("windows", "amd64"): "windows-x64",
           ("darwin", "arm64"): "macos-arm64"}.get((platform.system().lower(), machine))
    if key is None:
        pytest.skip(f"no extension platform for {platform.system()} {machine}")
    return key


def bare_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.setdefault("OMP_NUM_THREADS", "2")
    return {**env, **{k: str(v) for k, v in extra.items()}}


@pytest.fixture(scope="session")
def installed_python():
    """The bpy-only interpreter (made on first use; a half-made one is made again)."""
    python = VENV / "bin" / "python"
    ok = VENV / ".bpy-installed"
    if not ok.is_file():
        base = os.environ.get("STCHAIN_INSTALLED_PYTHON", f"python{PYTHON_LINE}")
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS, f"bpy=={BPY}"], check=True,
                       timeout=1200)
        ok.write_text(BPY)
    return python


@pytest.fixture(scope="session")
def installed_zip(tmp_path_factory):
    """The zip a user of this platform downloads: the package and its wheels (cached in vendor/wheels)."""
    out = tmp_path_factory.mktemp("dist")
    plat = extension_platform()
    subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--python", PYTHON_LINE, "--platform", plat,
                    "--out", str(out)], check=True, cwd=REPO, capture_output=True, timeout=1800)
    (zip_path,) = out.glob("blender_stchain-*.zip")
    return zip_path


@pytest.fixture(scope="session")
def installed(installed_python, installed_zip, tmp_path_factory):
    """(python, HOME) after Blender's installer put the zip into a fresh user folder."""
    home = tmp_path_factory.mktemp("home")
    report = drive(installed_python, home, "install", str(installed_zip))
    assert report["enabled"] and report["module_file"].startswith(str(home)), report
    return installed_python, home


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory):
    """Tiny random checkpoints of the model and of SAM 2.1 in one root, as a user's weights folder holds them."""
    from blender_stchain.engine.segment.model import write_random
    from blender_stchain.engine.weights.random_checkpoints import make_random

    root = tmp_path_factory.mktemp("weights")
    make_random(root, size="tiny", seed=0)
    write_random(root, "tiny")
    return root


def drive(python, home, case: str, arg, timeout: float = 600, tmp=None) -> dict:
    """Run one driver case in the bpy-only Python; the report, with its stderr and what it left in TMPDIR."""
    tmp = tmp or home.parent / f"tmp-{case}"
    tmp.mkdir(exist_ok=True)
    proc = subprocess.run([str(python), str(DRIVER), case, arg if isinstance(arg, str) else json.dumps(arg)],
                          env=bare_env(HOME=home, TMPDIR=tmp), capture_output=True, text=True, timeout=timeout,
                          cwd=tmp)
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(line[-1][len("REPORT "):])
    report["stderr"] = proc.stderr
    report["tmp_left"] = sorted(p.name for p in tmp.iterdir())
    return report


@pytest.fixture
def run_case(installed, tmp_path):
    python, home = installed

    def run(case: str, arg: dict, timeout: float = 600) -> dict:
        report = drive(python, home, case, arg, timeout, tmp=tmp_path / "tmp")
        assert report["python"] == str(python)  # Blender's own interpreter ran the case
        return report

    return run
