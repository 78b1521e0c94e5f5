"""Where runtimes live and which one is active.

``ROOT/<build>-<torch>/site`` holds a runtime's packages and ``ROOT/<build>-<torch>/runtime.json``
what it is and how it verified; ``ROOT/active.json`` names the active one and is only ever replaced
whole (``os.replace``), so a crash mid-install never leaves a half-active runtime. An install is
built in ``ROOT/.partial-*`` and renamed into place only after it verified.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..contracts.errors import StchainError

ACTIVE = "active.json"
INFO = "runtime.json"
PARTIAL, TRASH = ".partial-", ".trash-"


@dataclass(frozen=True)
class Runtime:
    folder: str
    path: Path
    info: dict

    @property
    def site(self) -> Path:
        return self.path / "site"

    def describe(self) -> str:
        device = self.info.get("device_name") or self.info.get("device") or "?"
        return f"{self.folder} (torch {self.info.get('torch', '?')}, {device})"


def default_root() -> Path:
    """The command line's folder when none is given (Blender passes its extension user folder)."""
    if os.environ.get("STCHAIN_RUNTIMES"):
        return Path(os.environ["STCHAIN_RUNTIMES"])
    base = os.environ.get("LOCALAPPDATA") if sys.platform == "win32" else os.environ.get("XDG_DATA_HOME")
    return Path(base or Path.home() / ".local" / "share") / "blender_stchain" / "runtimes"


def read(root: Path, folder: str) -> Runtime | None:
    path = Path(root) / folder
    try:
        info = json.loads((path / INFO).read_text())
    except (OSError, ValueError):
        return None
    return Runtime(folder, path, info) if (path / "site").is_dir() else None


def installed(root: Path) -> list[Runtime]:
    if not Path(root).is_dir():
        return []
    found = (read(root, p.name) for p in sorted(Path(root).iterdir()) if p.is_dir() and p.name[0] != ".")
    return [r for r in found if r is not None]


def active(root: Path | None) -> Runtime | None:
    """The active runtime, or None (the bundled wheels run the model)."""
    if root is None:
        return None
    try:
        folder = json.loads((Path(root) / ACTIVE).read_text())["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return read(root, folder)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` whole or not at all (a temporary file renamed over the old one)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def set_active(root: Path, folder: str | None) -> None:
    if folder is None:
        (Path(root) / ACTIVE).unlink(missing_ok=True)
    else:
        write_json(Path(root) / ACTIVE, {"folder": folder})


def place(root: Path, staging: Path, folder: str) -> Runtime:
    """Rename a verified staging folder to ``root/folder`` (an older copy of it goes to the trash)."""
    final = Path(root) / folder
    if final.exists():
        _discard(final)
    os.replace(staging, final)
    return read(root, folder)


def remove(root: Path, folder: str) -> Runtime | None:
    """Delete a runtime; when it was active, none is active afterwards (the bundled wheels run).
    Returns the runtime that stays active, if any."""
    target = Path(root) / folder
    if not target.is_dir() or folder.startswith("."):
        names = ", ".join(r.folder for r in installed(root)) or "none"
        raise StchainError(f"no runtime {folder!r} in {root} (installed: {names})")
    current = active(root)
    if current is not None and current.folder == folder:
        set_active(root, None)
    _discard(target)
    return active(root)


def _discard(path: Path) -> None:
    """Move out of the way first (one rename: a worker never sees half a runtime), then delete."""
    trash = path.with_name(f"{TRASH}{path.name}-{uuid.uuid4().hex[:6]}")
    try:
        os.replace(path, trash)
    except OSError as e:
        raise StchainError(f"{path.name} is in use ({e.strerror}): stop the running job "
                           "(Free GPU Memory), then remove it again") from None
    shutil.rmtree(trash, ignore_errors=True)


def clean_leftovers(root: Path) -> list[str]:
    """Remove what an interrupted install or removal left (a killed process, a power cut)."""
    gone = []
    for p in Path(root).glob(".*"):
        if p.is_dir() and p.name.startswith((PARTIAL, TRASH)):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def runtime_sites(paths) -> list[str]:
    """The entries of ``paths`` (sys.path) that are an installed runtime's site folder."""
    return [p for p in paths if p and os.path.basename(p) == "site" and os.path.isfile(os.path.join(p, "..", INFO))]


def enter(paths=None, marker: bool = True) -> list[str]:
    """Make the runtime on ``sys.path`` loadable in this process: on Windows its DLL folders (torch's
    and the CUDA wheels') join the DLL search path, ahead of anything Blender loaded. ``marker=False``:
    ``paths`` are runtime sites already (one being verified has no ``runtime.json`` yet)."""
    paths = sys.path if paths is None else paths
    sites = runtime_sites(paths) if marker else list(paths)
    if sys.platform == "win32":
        for site in sites:
            for d in [Path(site) / "torch" / "lib", *sorted(Path(site).glob("nvidia/*/bin"))]:
                if d.is_dir():
                    os.add_dll_directory(str(d))
    return sites
