"""What the official repositories hold (parts, licences, files) and where the weights root is."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...contracts.errors import WeightsError

LICENCES = {
    "TripoSG": "MIT (VAST-AI/TripoSG)",
    "ActionMesh": "FAIR Noncommercial Research License v1 (non-commercial use only)",
    "dinov2-large": "Apache-2.0 (facebook/dinov2-large)",
}
REPOS = {"TripoSG": "VAST-AI/TripoSG", "ActionMesh": "facebook/ActionMesh", "dinov2-large": "facebook/dinov2-large"}
RANDOM_KEY = "stchain_random"  # safetensors metadata key set by make-random: output is a smoke test


@dataclass(frozen=True)
class Component:
    """One loadable model folder of an official repository (its model class: ``models/registry.py``)."""

    name: str
    repo_dir: str  # folder under the weights root (a key of REPOS)
    subdir: str  # folder inside the repository ("" = repository root)
    weights_file: str
    title: str
    licence_note: str = ""  # overrides the repository licence where the part's own licence differs

    @property
    def licence(self) -> str:
        return self.licence_note or LICENCES[self.repo_dir]

    @property
    def relpath(self) -> str:
        return f"{self.repo_dir}/{self.subdir}".rstrip("/")


COMPONENTS = {c.name: c for c in (
    Component("transformer", "TripoSG", "transformer", "diffusion_pytorch_model.safetensors",
              "TripoSG DiT"),
    Component("vae", "TripoSG", "vae", "diffusion_pytorch_model.safetensors",
              "TripoSG VAE"),
    Component("image_encoder_dinov2", "TripoSG", "image_encoder_dinov2", "model.safetensors",
              "DINOv2 image encoder (TripoSG copy)",
              "Apache-2.0 (DINOv2 weights, shipped in VAST-AI/TripoSG)"),
    Component("denoiser", "ActionMesh", "denoiser", "model.safetensors",
              "ActionMesh denoiser"),
    Component("autoencoder", "ActionMesh", "autoencoder", "model.safetensors",
              "ActionMesh autoencoder"),
    Component("dinov2", "dinov2-large", "", "model.safetensors", "DINOv2-L image encoder"),
)}
# Plain files of each repository that are not model folders (configs the pipeline reads).
EXTRA_FILES = {
    "TripoSG": ["model_index.json", "scheduler/scheduler_config.json",
                "feature_extractor_dinov2/preprocessor_config.json"],
    "ActionMesh": [],
    "dinov2-large": ["preprocessor_config.json"],
}


def repo_files(repo_dir: str) -> list[str]:
    """Every file of ``repo_dir`` the pipeline needs, relative to the repository root."""
    files = list(EXTRA_FILES[repo_dir])
    for c in COMPONENTS.values():
        if c.repo_dir == repo_dir:
            prefix = f"{c.subdir}/" if c.subdir else ""
            files += [prefix + "config.json", prefix + c.weights_file]
    return files


# --------------------------------------------------------------------------- root discovery

def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(base) / "blender_stchain" / "weights"


def find_root(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit argument > ``$STCHAIN_WEIGHTS`` > the default user folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("STCHAIN_WEIGHTS")
    return Path(env).expanduser() if env else default_root()


def component_folder(root_or_folder: str | os.PathLike, name: str) -> Path:
    """Resolve ``name``'s folder: ROOT/<repo>/<sub>, ROOT/<sub>, or the folder itself."""
    comp = component(name)
    base = Path(root_or_folder).expanduser()
    candidates = [base / comp.relpath, base / comp.subdir, base] if comp.subdir else [base / comp.relpath, base]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    return candidates[0]


def component(name: str) -> Component:
    if name not in COMPONENTS:
        raise WeightsError(f"unknown model part {name!r}; choose one of {', '.join(COMPONENTS)}")
    return COMPONENTS[name]
