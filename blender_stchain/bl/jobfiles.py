"""Where a job's files live and that none is left behind.

A job folder (``job-*`` in the extension's user folder) holds the exported frames, job.json and the
worker's result while the job runs; it is removed on every exit path (done, failed, cancelled, a
refused start). The result is moved next to the .blend (or the headless ``--out``) first, so the
scene references a file that stays. Folders whose Blender is gone (a crash) are removed at the next start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

OWNER = "owner.pid"
RESULT_SUFFIX = "_4dmesh.safetensors"


def new_job_dir(root: Path) -> Path:
    clean_stale(root)
    path = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    (path / OWNER).write_text(str(os.getpid()))
    return path


def clean_stale(root: Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove job folders whose owning Blender is no longer running (or that name none and are old)."""
    removed = []
    for folder in Path(root).glob("job-*"):
        if folder.is_dir() and _stale(folder, min_age_s):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _stale(folder: Path, min_age_s: float) -> bool:
    try:
        pid = int((folder / OWNER).read_text())
    except (OSError, ValueError):
        try:
            return time.time() - folder.stat().st_mtime > min_age_s
        except OSError:
            return False
    return pid != os.getpid() and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


def remove(job_dir: Path | None) -> None:
    if job_dir is not None:
        shutil.rmtree(job_dir, ignore_errors=True)


def result_destination(blend_path: str | os.PathLike | None, fallback_dir: Path) -> Path:
    """``NAME_4dmesh.safetensors`` beside the .blend; for an unsaved file, in ``fallback_dir``."""
    if blend_path:
        blend = Path(blend_path)
        return blend.with_name(blend.stem + RESULT_SUFFIX)
    fallback_dir.mkdir(parents=True, exist_ok=True)
    return fallback_dir / f"untitled-{time.strftime('%Y%m%d-%H%M%S')}{RESULT_SUFFIX}"


def keep_result(produced: str | os.PathLike, dest: Path) -> Path:
    """Move the worker's result out of the job folder to ``dest`` (replacing an older one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(produced), str(dest))
    return dest
