"""Install, verify, roll back and remove runtimes with real pip, real wheel files (stand-in torch
packages that run this interpreter's real CPU torch) and a local index: the verification's kernels
really run, and every failure must leave the previous runtime active and nothing else behind."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from blender_stchain.contracts.errors import Cancelled, StchainError
from blender_stchain.runtime import store
from blender_stchain.runtime.install import install, lock_lines
from blender_stchain.runtime.plan import Facts, load_table
from tests.conftest import REPO
from tests.runtime import standins

FACTS = Facts("Linux", "x64", f"cp{sys.version_info.major}{sys.version_info.minor}")
SECTION = (FACTS.platform, FACTS.python)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """Wheels, a table of test builds (device ``cpu``: no GPU here) and their locks."""
    base = tmp_path_factory.mktemp("index")
    wheels = base / "wheels"
    wheels.mkdir()
    torch = {v: standins.make_wheel(wheels, "torch", f"2.13.0+{v}", {"torch/__init__.py": standins.torch_init(v)})
             for v in standins.TORCH_VARIANTS}
    extra = standins.make_wheel(wheels, "standin_extra", "1.0", {"standin_extra/__init__.py": "VALUE = 7\n"})
    slow_dir = base / "slow"
    slow_dir.mkdir()
    big = standins.make_wheel(slow_dir, "standin_big", "1.0", {"standin_big/blob.bin": standins.incompressible(3_000_000)})
    server, url = standins.serve(slow_dir)
    locks = {
        "good": {"torch==2.13.0+good": torch["good"], "standin_extra==1.0": extra},
        "tampered": {"torch==2.13.0+good": torch["good"], "standin_extra==1.0": extra},
        "broken": {"torch==2.13.0+broken": torch["broken"]},
        "wrong": {"torch==2.13.0+wrong": torch["wrong"]},
        "slow": {"standin_big==1.0": big},
        "huge": {"torch==2.13.0+good": torch["good"]},
    }
    for name, wheels_of in locks.items():
        wrong = {"standin_extra==1.0"} if name == "tampered" else set()
        (base / f"runtime-lock-{name}.txt").write_text(standins.lock_text(*SECTION, wheels_of, wrong))
    (base / "runtime-lock-missing.txt").write_text(f"[{SECTION[0]} {SECTION[1]}]\ntorch==2.13.0+absent "
                                                   f"--hash=sha256:{'0' * 64}\n")  # not in the index
    builds = [standins.build_entry(n, f"find:{url if n == 'slow' else wheels}") for n in [*locks, "missing"]]
    next(b for b in builds if b["name"] == "huge")["unpacked_bytes"] = 10**16  # more than any disk here
    standins.write_table(base, builds)
    yield base
    server.shutdown()


def build(index, name):
    return next(b for b in load_table(index / "runtimes.json") if b.name == name)


def run_install(index, root, name, online=True, cancel=lambda: False, events=None):
    events = [] if events is None else events
    return install(build(index, name), FACTS, root, online=online, emit=events.append, cancel=cancel,
                   lock=index / f"runtime-lock-{name}.txt")


@pytest.fixture(scope="module")
def installed(index, tmp_path_factory):
    """The good runtime, installed once; pip's environment and a system-wide pip.conf say dry-run and
    forbid that torch, PYTHONPATH points elsewhere: the install must not listen to any of them."""
    root = tmp_path_factory.mktemp("runtimes")
    xdg = tmp_path_factory.mktemp("xdg")
    (xdg / "pip").mkdir()
    (xdg / "constraints.txt").write_text("torch<1\n")
    (xdg / "pip" / "pip.conf").write_text(f"[global]\nconstraint = {xdg / 'constraints.txt'}\n[install]\ndry-run = true\n")
    events = []
    saved = dict(os.environ)
    os.environ.update(PIP_DRY_RUN="1", PIP_TARGET=str(root / "elsewhere"), PYTHONPATH=str(root / "nothing"),
                      XDG_CONFIG_DIRS=str(xdg))
    try:
        runtime = run_install(index, root, "good", events=events)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return root, runtime, events


def test_install_verifies_then_activates(installed):
    root, runtime, events = installed
    assert store.active(root) == runtime and runtime.folder == "good-2.13.0"
    site = sorted(p.name for p in runtime.site.iterdir())
    assert "torch" in site and "standin_extra" in site and not any(n.startswith("numpy") for n in site)
    assert sorted(p.name for p in root.iterdir()) == ["active.json", "good-2.13.0"]  # no staging, no pip temp
    check = runtime.info["check"]
    assert check["ok"] and check["dtype"] == "float32" and check["device_name"] == "CPU"
    assert check["site"] == str(root / ".partial-good-2.13.0" / "site")  # verified before it was moved in place
    assert 0 <= check["matmul_error"] < 1e-4 and 0 <= check["attention_error"] < 1e-4
    assert store.runtime_sites([str(runtime.site), str(root), "/usr/lib/python3/dist-packages"]) == [str(runtime.site)]
    stages = [e.stage for e in events]
    assert stages[0] == "download" and stages[-1] == "verify" and events[-1].fraction == 1.0


def test_check_and_remove_from_the_command_line(installed, tmp_path):
    root = tmp_path / "runtimes"  # a copy: the other tests keep the module's runtime
    import shutil

    shutil.copytree(installed[0], root)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "blender_stchain", "runtime", *args, "--root", str(root)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)

    out = cli("check", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["folder"] == "good-2.13.0" and report["site"] == str(root / "good-2.13.0" / "site")
    out = cli("remove")
    assert out.returncode == 0 and out.stdout.strip() == "removed good-2.13.0; active now: none (the bundled wheels)"
    assert sorted(p.name for p in root.iterdir()) == []
    out = cli("check")
    assert out.returncode == 1 and out.stderr.startswith("error: no GPU runtime is active") and out.stderr.count("\n") == 1


@pytest.mark.parametrize("name, message", [
    ("tampered", "a downloaded wheel (standin_extra==1.0) does not match the hash in the tampered lock"),
    ("broken", "the runtime failed its check: ImportError: DLL load failed while importing _C"),
    ("wrong", "the runtime failed its check: attention error"),
    ("missing", "pip could not install missing-2.13.0: Could not find a version that satisfies the requirement "
                "torch==2.13.0+absent"),
])
def test_a_failed_install_keeps_the_previous_runtime(installed, index, name, message):
    root, runtime, _ = installed
    with pytest.raises(StchainError) as e:
        run_install(index, root, name)
    print(e.value)
    assert str(e.value).startswith(message)
    assert store.active(root) == runtime
    assert sorted(p.name for p in root.iterdir()) == ["active.json", "good-2.13.0"]


def test_refusals_before_any_download(installed, index):
    root, runtime, _ = installed
    with pytest.raises(StchainError, match="^not enough disk space for huge-2.13.0: 20000000.0 GB needed"):
        run_install(index, root, "huge")
    with pytest.raises(StchainError, match="^Online Access is off"):
        run_install(index, root, "good", online=False)
    assert store.active(root) == runtime and sorted(p.name for p in root.iterdir()) == ["active.json", "good-2.13.0"]


def test_cancel_mid_download_leaves_nothing(installed, index):
    root, runtime, _ = installed
    asked = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if event.message.startswith("downloading") and not event.message.startswith("downloading 0.0 MB"):
            asked.set()  # bytes have arrived (the slow server needs ~15 s for the whole wheel)

    start = time.monotonic()
    with pytest.raises(Cancelled):
        install(build(index, "slow"), FACTS, root, online=True, emit=emit, cancel=asked.is_set,
                lock=index / "runtime-lock-slow.txt")
    print(f"cancelled after {time.monotonic() - start:.1f} s, {len(events)} events")
    assert asked.is_set() and time.monotonic() - start < 12
    assert store.active(root) == runtime and sorted(p.name for p in root.iterdir()) == ["active.json", "good-2.13.0"]


def test_lock_sections_and_refusals():
    lock = ("[linux-x64 cp311]\ntorch==2.13.0 --hash=sha256:" + "a" * 64 + "\n"
            "[windows-x64 cp311]\ntorch==2.13.0+cu130 --hash=sha256:PLACEHOLDER\n")
    assert lock_lines(lock, "cu130", Facts("Linux", "x64", "cp311")) == ["torch==2.13.0 --hash=sha256:" + "a" * 64]
    with pytest.raises(StchainError, match="no real hashes yet: regenerate it with scripts/lock_runtime.py"):
        lock_lines(lock, "cu130", Facts("Windows", "x64", "cp311"))
    with pytest.raises(StchainError, match="no wheels for linux-x64 with Python cp313"):
        lock_lines(lock, "cu130", Facts("Linux", "x64", "cp313"))
    with pytest.raises(StchainError, match="lists numpy, which Blender provides"):
        lock_lines("[linux-x64 cp311]\nnumpy==2.3.0 --hash=sha256:" + "b" * 64, "x", Facts("Linux", "x64", "cp311"))
    with pytest.raises(StchainError, match="not pinned with a hash: torch>=2"):
        lock_lines("[linux-x64 cp311]\ntorch>=2\n", "x", Facts("Linux", "x64", "cp311"))


def _real_torch_wheel():
    folder = Path(os.environ.get("STCHAIN_TORCH_WHEEL_DIR", "/opt/wheels"))
    found = sorted(folder.glob(f"torch-*-{FACTS.python}-*.whl")) if folder.is_dir() else []
    return found[0] if found else None


@pytest.mark.slow
def test_a_real_torch_wheel_becomes_the_runtime(tmp_path):
    """The whole path with a real PyTorch wheel (the CPU build a local mirror holds): pip unpacks it,
    the probe imports it from the runtime alone and runs its kernels, and it becomes active."""
    wheel = _real_torch_wheel()
    if wheel is None:
        pytest.skip("no torch wheel in STCHAIN_TORCH_WHEEL_DIR (default /opt/wheels)")
    version = wheel.name.split("-")[1]
    (tmp_path / "runtime-lock-real.txt").write_text(standins.lock_text(*SECTION, {f"torch=={version}": wheel}))
    standins.write_table(tmp_path, [standins.build_entry("real", f"find:{wheel.parent}", unpacked_bytes=10**9)])
    root = tmp_path / "runtimes"
    runtime = run_install(tmp_path, root, "real")
    assert store.active(root) == runtime and runtime.info["check"]["torch"] == version
    assert (runtime.site / "torch" / "lib").is_dir() and runtime.info["check"]["attention_error"] < 1e-4


def test_the_command_stops_when_the_cancel_file_appears(index, tmp_path):
    """Blender's Cancel button: the install command sees its cancel file, stops pip and leaves nothing."""
    root, cancel = tmp_path / "runtimes", tmp_path / "install.cancel"
    proc = subprocess.Popen([sys.executable, "-m", "blender_stchain", "runtime", "install", "--json", "--build", "slow",
                             "--table", str(index / "runtimes.json"), "--root", str(root), "--cancel-file", str(cancel)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("message", "").startswith("downloading") and not event["message"].startswith("downloading 0.0 MB"):
            break
    cancel.touch()
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - start
    print(f"stopped {took:.2f} s after the cancel file appeared: {err.strip()}")
    assert proc.returncode == 2 and took < 5.0 and err.strip() == "error: cancelled by the user"
    assert list(root.iterdir()) == []
