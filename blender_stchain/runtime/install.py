"""Install a runtime: pip into a staging folder with pinned hashes, verify it in a fresh process,
then rename it into place and mark it active. Any failure (refusal, download, hash, verification,
cancel, a full disk) removes the staging folder and leaves the previous runtime active.

pip runs in the interpreter the runtime is for (Blender's own Python), isolated from everything
that changes what it installs: ``-I`` (no user site, no PYTHON* variables), ``--isolated`` and
``PIP_CONFIG_FILE=os.devnull`` (no pip configuration file at all, no PIP_* variables), binary wheels only, ``--require-hashes`` against the lock
section for this platform and Python, ``--no-deps`` (the lock is the whole list: numpy is never in
it, Blender's stays), ``--no-cache-dir`` and temporary files inside the staging folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..contracts.errors import StchainError
from ..contracts.events import Progress
from . import store
from .plan import Build, Facts, gb, vendor_file
from .verify import clean_env, verify, wait

NEVER_INSTALL = {"numpy", "setuptools", "requests", "urllib3", "certifi"}  # Blender's own copies stay
PLACEHOLDER = "PLACEHOLDER"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==\S+(\s+--hash=sha256:(?:[0-9a-f]{64}|" + PLACEHOLDER + r"))+$")
DOWNLOAD_SHARE = 0.85  # of the bar; the verification takes the rest


def lock_lines(text: str, build: str, facts: Facts) -> list[str]:
    """The pinned, hashed lines of the lock section ``[PLATFORM PYTHON]`` (pure)."""
    section, lines = None, []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").split()
        elif line and section == [facts.platform, facts.python]:
            match = PIN.match(line)
            if not match:
                raise StchainError(f"the {build} lock has a line that is not pinned with a hash: {line[:60]}")
            if match.group(1).lower() in NEVER_INSTALL:
                raise StchainError(f"the {build} lock lists {match.group(1)}, which Blender provides")
            lines.append(line)
    if not lines:
        raise StchainError(f"the {build} build has no wheels for {facts.platform} with Python {facts.python}")
    if any(PLACEHOLDER in line for line in lines):
        raise StchainError(f"the {build} lock for {facts.platform} {facts.python} has no real hashes yet: "
                           "regenerate it with scripts/lock_runtime.py, or choose another build")
    return lines


def index_args(index: str) -> list[str]:
    """``find:LOCATION`` -> a flat folder or page of wheels (offline mirrors, tests); else an index URL."""
    if index.startswith("find:"):
        return ["--no-index", "--find-links", index[len("find:"):]]
    return ["--index-url", index]


def pip_command(python: str, requirements: Path, target: Path, index: str, raw_progress: bool) -> list[str]:
    return [python, "-I", "-m", "pip", "install", "--isolated", "--no-input", "--disable-pip-version-check",
            "--no-cache-dir", "--no-deps", "--only-binary=:all:", "--require-hashes", "--no-warn-script-location",
            "--progress-bar", "raw" if raw_progress else "off", "--target", str(target), "-r", str(requirements),
            *index_args(index)]


def pip_has_raw_progress(python: str) -> bool:
    """``--progress-bar raw`` (machine-readable bytes) exists from pip 24.1; older pips only say 'Collecting'."""
    try:
        out = subprocess.run([python, "-I", "-m", "pip", "--version"], capture_output=True, text=True,
                             timeout=60, env=clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    found = re.match(r"pip (\d+)\.(\d+)", out.stdout)
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= (24, 1)


def check_disk(root: Path, build: Build) -> None:
    free = shutil.disk_usage(root).free
    if free < build.disk_needed:
        raise StchainError(f"not enough disk space for {build.folder}: {gb(build.disk_needed)} needed, "
                           f"{gb(free)} free in {root}; free some space, then install again")


def install(build: Build, facts: Facts, root: Path, *, online: bool, emit, cancel, python: str | None = None,
            lock: str | Path | None = None) -> store.Runtime:
    """Install, verify and activate ``build`` in ``root``; returns the new active runtime."""
    if not online:
        raise StchainError("Online Access is off: enable it in Preferences > System > Network, then install")
    python = python or sys.executable
    root.mkdir(parents=True, exist_ok=True)
    store.clean_leftovers(root)
    check_disk(root, build)
    lines = lock_lines(Path(lock or vendor_file(f"runtime-lock-{build.name}.txt")).read_text(), build.name, facts)
    staging = root / f"{store.PARTIAL}{build.folder}"
    try:
        (staging / "tmp").mkdir(parents=True)
        (staging / "lock.txt").write_text("\n".join(lines) + "\n")
        index = build.index[facts.platform]
        cmd = pip_command(python, staging / "lock.txt", staging / "site", index, pip_has_raw_progress(python))
        run_pip(cmd, staging / "tmp", build, len(lines), emit, cancel)
        emit(Progress("verify", DOWNLOAD_SHARE, "checking the runtime in a fresh process"))
        report = verify(staging / "site", build.device, python, cancel)
        shutil.rmtree(staging / "tmp")
        store.write_json(staging / store.INFO, {"build": build.name, "torch": build.torch, "device": build.device,
                                                "platform": facts.platform, "python": facts.python,
                                                "installed": time.strftime("%Y-%m-%d %H:%M:%S"), "check": report})
        runtime = store.place(root, staging, build.folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    store.set_active(root, build.folder)
    emit(Progress("verify", 1.0, f"{runtime.describe()} is active"))
    return runtime


def run_pip(cmd: list[str], tmp: Path, build: Build, count: int, emit, cancel) -> None:
    # --isolated skips the user's pip.conf but not the system-wide one (a constraint, an index an admin
    # set): PIP_CONFIG_FILE=os.devnull is pip's switch for "no configuration file at all"
    env = {**clean_env(tmp), "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env, bufsize=1)
    errors: list[str] = []
    readers = [threading.Thread(target=_progress, args=(proc.stdout, build, count, emit), daemon=True),
               threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)]
    for t in readers:
        t.start()
    proc.stdout, proc.stderr = None, None  # the readers own the pipes; wait() only polls
    wait(proc, cancel, 6 * 3600, "the download")
    for t in readers:
        t.join(timeout=5)
    if proc.returncode != 0:
        raise StchainError(pip_error(errors, build))


def _progress(stream, build: Build, count: int, emit) -> None:
    """pip's lines -> progress events: bytes from ``Progress N of M`` lines, else wheels collected."""
    done_bytes, current, seen = 0, 0, 0
    for line in stream:
        raw = re.match(r"Progress (\d+) of (\d+)", line)
        if raw:
            now, total = int(raw.group(1)), int(raw.group(2))
            if now < current:  # a new file started
                done_bytes += current
            current = now
            part = (done_bytes + current) / max(build.download_bytes, 1)
            emit(Progress("download", DOWNLOAD_SHARE * min(part, 1.0),
                          f"downloading {gb(done_bytes + current)} of {gb(build.download_bytes)}"))
        elif line.startswith(("Collecting", "Processing")):
            seen += 1
            emit(Progress("download", DOWNLOAD_SHARE * min(seen / max(count, 1), 1.0), line.strip()[:80]))


def pip_error(stderr: list[str], build: Build) -> str:
    text = "".join(stderr)
    if "DO NOT MATCH THE HASHES" in text:
        name = re.search(r"^\s+(\S+) from ", text, flags=re.M)
        return (f"a downloaded wheel{' (' + name.group(1) + ')' if name else ''} does not match the hash in the "
                f"{build.name} lock: nothing was installed, the previous runtime stays")
    if "No module named pip" in text:
        return "this Python has no pip: run `python -m ensurepip` with Blender's Python once, then install again"
    if "No space left" in text:
        return "the disk filled up during the download: nothing was installed; free some space, then install again"
    errors = [line.strip()[len("ERROR: "):] for line in stderr if line.strip().startswith("ERROR: ")]
    first = (errors or [line.strip() for line in stderr if line.strip()] or ["no message"])[0]  # the cause, not the advice
    return f"pip could not install {build.folder}: {first[:200]}; nothing was installed, the previous runtime stays"
