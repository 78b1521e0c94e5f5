"""Official checkpoint layouts, strict loading, the weights check, downloads and random checkpoints.

A weights root holds the three official Hugging Face repositories, unchanged::

    ROOT/
      TripoSG/         (VAST-AI/TripoSG, MIT)
        model_index.json
        transformer/{config.json, diffusion_pytorch_model.safetensors}
        vae/{config.json, diffusion_pytorch_model.safetensors}
        scheduler/scheduler_config.json
        image_encoder_dinov2/{config.json, model.safetensors}
        feature_extractor_dinov2/preprocessor_config.json
      ActionMesh/      (facebook/ActionMesh, FAIR Noncommercial Research License v1)
        denoiser/{config.json, model.safetensors}
        autoencoder/{config.json, model.safetensors}
      dinov2-large/    (facebook/dinov2-large, Apache-2.0)
        config.json  model.safetensors  preprocessor_config.json

The root is the explicit argument, else ``$STCHAIN_WEIGHTS``, else ``default_root()`` (``catalogue``).
Loading is strict (``loading``): every key and shape must match the model built from the folder's own
config.json, and any mismatch is one ``WeightsError`` naming folder, file and keys. Only safetensors
are read (``contracts.safetensors_io``, ``tensors``). ``check`` reads headers and configs only;
``fetch`` downloads; ``random_checkpoints`` writes smoke-test checkpoints in the official layouts.
"""

from .catalogue import (
    COMPONENTS,
    LICENCES,
    RANDOM_KEY,
    REPOS,
    component_folder,
    default_root,
    find_root,
    repo_files,
)
from .check import WeightsReport, check
from .fetch import download
from .loading import build, load_component, read_config, weight_identity

__all__ = [
    "COMPONENTS", "LICENCES", "RANDOM_KEY", "REPOS", "WeightsReport", "build", "check", "component_folder",
    "default_root", "download", "find_root", "load_component", "read_config", "repo_files", "weight_identity",
]
