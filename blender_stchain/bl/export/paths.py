"""Export targets: the format of an output path and a writable folder for it (no bpy: checked before
Blender's module is even loaded, so a typo costs nothing)."""

from __future__ import annotations

import os
from pathlib import Path

from ...contracts.errors import StchainError
from ..runner import RESULT_SUFFIX  # the result kept beside an export: the name the Blender path gives it

FORMATS = {".abc": "alembic", ".usd": "usd", ".usdc": "usd", ".usda": "usd", ".glb": "gltf", ".gltf": "gltf"}


def format_of(path) -> str:
    """The format of an output path, or one line naming the extensions we write."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise StchainError(f"{Path(path).name}: unknown export format; use one of {', '.join(FORMATS)} "
                           "(or .blend for a scene)")
    return kind


def check_target(path) -> Path:
    """The output path, resolved, once its format is known and its folder exists and is writable."""
    path = Path(path).expanduser().resolve()
    format_of(path)
    folder = path.parent
    if not folder.is_dir():
        raise StchainError(f"cannot write {path.name}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StchainError(f"cannot write {path.name}: folder {folder} is not writable; choose another --out")
    return path


def result_beside(target: Path) -> Path:
    """Where an export's result file is kept: ``X.abc`` -> ``X_4dmesh.safetensors``."""
    return target.with_name(target.stem + RESULT_SUFFIX)
