"""What ``--resume`` compares: a hash of the footage's identity and of everything that shapes a result.

Footage identity is content, not timestamps: each file's relative name, size and sha256, so a copy of
the same footage on another node (new mtimes) still matches, and an edited frame does not. The job
part is the preset, the resolved settings (preset + overrides), method, frame range, precision, the weights path
and the package version. The device is left out: it does not change what the job asks for.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..contracts.job import JobSpec

CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def footage_identity(path: str | None) -> list | None:
    """[(relative name, size, sha256)] of a file or of every non-hidden file under a folder."""
    if path is None:
        return None
    root = Path(path)
    if root.is_file():
        return [[root.name, root.stat().st_size, file_digest(root)]]
    if not root.is_dir():
        return [["missing", str(root)]]
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [[str(p.relative_to(root)), p.stat().st_size, file_digest(p)] for p in files]


def job_hash(spec: dict) -> str:
    """sha256 of footage + masks identity and the job's resolved settings (see the module doc)."""
    import blender_stchain

    job = JobSpec(**spec)
    key = {
        "version": blender_stchain.__version__,
        "footage": footage_identity(job.footage),
        "masks": footage_identity(job.masks),
        "frames": list(job.frames) if job.frames else None,
        "method": job.method,
        "preset": job.preset,
        "settings": job.resolved_settings().to_dict(),
        "precision": job.precision,
        "weights": job.weights,
        "allow_random_weights": job.allow_random_weights,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
