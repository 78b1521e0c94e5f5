"""The SAM 2.1 checkpoints segmentation can use, where they live in a weights root, and their status.

Torch-free (``weights check`` and Blender read it). Each size is the official Hugging Face repository
``facebook/sam2.1-hiera-<size>`` unchanged: ``config.json`` + ``model.safetensors`` in the layout of
``transformers``' ``Sam2VideoModel``. They sit beside the backbone's repositories::

    ROOT/sam2.1-hiera-tiny/{config.json, model.safetensors}     (Apache-2.0)

Segmentation is optional: a missing size is reported as ``absent`` and does not fail ``weights check``;
a present but broken one does.
"""

from __future__ import annotations

from pathlib import Path

from ...contracts.prompts import SEGMENT_MODELS as MODELS

SIZES = tuple(m.removeprefix("sam2.1-hiera-") for m in MODELS)
LICENCE = "Apache-2.0 (facebook/sam2.1-hiera-*)"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_MODEL = "sam2.1-hiera-tiny"
REPOS = {m: f"facebook/{m}" for m in MODELS}
FILES = ("config.json", WEIGHTS_FILE)


def model_name(text: str) -> str:
    """``tiny`` / ``sam2.1-hiera-tiny`` / ``sam2-tiny`` -> the repository folder name."""
    key = str(text).lower().removeprefix("sam2.1-hiera-").removeprefix("sam2-").removeprefix("sam2.1-")
    name = f"sam2.1-hiera-{key}"
    if name not in MODELS:
        from ...contracts.errors import WeightsError

        raise WeightsError(f"unknown segmentation model {text!r}; choose one of {', '.join(MODELS)}")
    return name


def folder(root: str | Path, name: str = DEFAULT_MODEL) -> Path:
    """ROOT/<name>, or ``root`` itself when it already is a SAM 2.1 folder."""
    root = Path(root).expanduser()
    if (root / WEIGHTS_FILE).is_file() and (root / "config.json").is_file() and not (root / name).is_dir():
        return root
    return root / name


def present(root: str | Path) -> list[str]:
    """The sizes whose two files exist under ``root`` (cheap: no header read)."""
    return [m for m in MODELS if all((Path(root) / m / f).is_file() for f in FILES)]
