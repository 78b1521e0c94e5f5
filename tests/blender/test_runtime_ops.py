"""The GPU Runtime buttons through the PyPI bpy module: the real operator runs the real ``runtime``
command in a process (stand-in nvidia-smi first on PATH, stand-in wheels from a local folder), and
the worker's path and the panel's line follow the active runtime."""

import os
import sys

import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain.bl import ops, prefs  # noqa: E402
from blender_stchain.bl.controller import Controller  # noqa: E402
from blender_stchain.bl.runner import ProcessRunner  # noqa: E402
from blender_stchain.runtime import store  # noqa: E402
from tests.runtime import standins  # noqa: E402

PYTHON = f"cp{sys.version_info.major}{sys.version_info.minor}"


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine with an NVIDIA driver 590 and an offline mirror of one stand-in build."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    torch = standins.make_wheel(wheels, "torch", "2.13.0+good", {"torch/__init__.py": standins.torch_init("good")})
    (tmp_path / "runtime-lock-standin.txt").write_text(
        standins.lock_text("linux-x64", PYTHON, {"torch==2.13.0+good": torch}))
    table = standins.write_table(tmp_path, [standins.build_entry("standin", f"find:{wheels}")])
    bin_dir = standins.nvidia_smi(tmp_path / "bin", "590.44.01").parent
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STCHAIN_RUNTIME_TABLE", str(table))
    monkeypatch.setenv("STCHAIN_RUNTIMES", str(tmp_path / "runtimes"))
    return tmp_path / "runtimes"


@pytest.fixture
def online(registered):
    system = bpy.context.preferences.system
    system.use_online_access = True
    yield
    system.use_online_access = False


def test_install_needs_online_access(registered, machine):
    assert not bpy.app.online_access  # the bpy module starts offline
    with pytest.raises(RuntimeError, match="Online Access is off: enable it in Preferences > System > Network"):
        bpy.ops.stchain.runtime(action="install")
    assert not machine.exists() or list(machine.iterdir()) == []


def test_plan_install_check_remove(online, machine):
    status = bpy.context.window_manager.stchain_status
    assert bpy.app.online_access
    assert prefs.job_runtime(bpy.context) == "Runtime: bundled PyTorch, device: CPU"
    assert bpy.ops.stchain.runtime(action="plan") == {"FINISHED"}
    assert status.message.splitlines()[0] == "build: standin-2.13.0 (torch 2.13.0, CUDA 13.0)"
    assert "driver 590.44.01 >= 525" in status.message

    assert bpy.ops.stchain.runtime(action="install") == {"FINISHED"}
    runtime = store.active(machine)
    assert runtime.folder == "standin-2.13.0"
    assert prefs.job_runtime(bpy.context) == "Runtime: standin-2.13.0, device: CPU (float32)"
    path = prefs.pythonpath(sys.executable)  # the worker's: the runtime right after the package, ahead of the wheels
    assert path[1] == str(runtime.site) and all(p.endswith("site-packages") for p in path[2:])
    assert str(runtime.site) not in prefs.pythonpath("/custom/python")  # Runtime Python keeps its own packages

    assert bpy.ops.stchain.runtime(action="check") == {"FINISHED"}
    assert status.message.startswith("standin-2.13.0: torch 2.13.0") and status.message.endswith(": ok")
    job = Controller()  # a worker process still running on the runtime: remove stops it first
    job.start(ProcessRunner(["-c", "import time; time.sleep(120)"], grace_s=0.5))
    ops._active["job"] = job
    assert bpy.ops.stchain.runtime(action="remove") == {"FINISHED"}
    assert not job.runner.alive and job.runner.proc.returncode == -15  # stopped (SIGTERM), not left running
    assert store.active(machine) is None and list(machine.iterdir()) == []
    assert prefs.job_runtime(bpy.context) == "Runtime: bundled PyTorch, device: CPU"


@pytest.mark.parametrize("driver, says", [
    ("590.44.01", "NVIDIA GeForce RTX 4090 (compute 8.9), driver 590.44.01 >= 580: the CUDA 13.0 build: install it in "
                  "Preferences > Add-ons > 4D Mesh > GPU Runtime (cu130-2.13.0, 2.7 GB download)"),
    ("470.256.02", "NVIDIA driver 470.256.02 is too old for a GPU runtime (minimum 525): update the driver, then plan again"),
])
def test_detect_devices_says_what_to_install(driver, says, tmp_path, monkeypatch):
    """What Detect Devices appends when the worker sees no GPU (the vendored table, a stand-in driver)."""
    bin_dir = standins.nvidia_smi(tmp_path / "bin", driver).parent
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.delenv("STCHAIN_RUNTIME_TABLE", raising=False)
    assert prefs.install_hint() == says
