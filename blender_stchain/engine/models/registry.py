"""The model classes, found by component name: the one place that says which class a checkpoint folder builds.

``MODELS[name]`` is the class for a component of ``engine/weights`` (its folder's ``config.json`` goes to
``cls.from_config``). Adding a backbone part is a new model module plus one line here.
"""

from __future__ import annotations

from .actionmesh_autoencoder import ActionMeshAutoencoder
from .actionmesh_denoiser import ActionMeshDenoiser
from .dinov2 import Dinov2Model
from .triposg_dit import TripoSGDiT
from .triposg_vae import TripoSGVAE

MODELS: dict[str, type] = {
    "transformer": TripoSGDiT,
    "vae": TripoSGVAE,
    "image_encoder_dinov2": Dinov2Model,  # TripoSG's copy of DINOv2
    "denoiser": ActionMeshDenoiser,
    "autoencoder": ActionMeshAutoencoder,
    "dinov2": Dinov2Model,  # facebook/dinov2-large
}


def model_class(name: str) -> type:
    if name not in MODELS:
        raise KeyError(f"no model class registered for component {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, cfg: dict):
    """``name``'s model from an official config dict, on the current default device."""
    return model_class(name).from_config(cfg)


def component_of(cls: type) -> str:
    """The first component built by ``cls`` (for tests that start from a class)."""
    return next(name for name, c in MODELS.items() if c is cls)
