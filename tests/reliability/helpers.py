"""What the reliability tests share: the records behind the suite's summary line, the folder check
that proves nothing was left behind, and a worker started as a real process."""

import subprocess
import sys

from tests.conftest import DATA, REPO

CAMEL = DATA / "rgba_frames/davis_camel"
FAULTS: list[tuple[str, str, bool]] = []  # (fault, what the user saw, data lost?)
INPUTS_TRIED: list[tuple[str, str]] = []  # (input, "error" | "warning" | "read") fed to open_footage
LOADER_CASES: list[int] = []  # corrupt weight files the loader was fed, one entry per fuzz run


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def start_worker(job, tmp_path, preexec=None):
    """``python -m blender_stchain.engine.worker job.json`` as the add-on starts it (cancel: job.json.cancel)."""
    path = job.save(tmp_path / "job.json")
    return subprocess.Popen([sys.executable, "-m", "blender_stchain.engine.worker", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
