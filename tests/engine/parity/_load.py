"""The one place parity checks load a fixture checkpoint: through the product loader (engine/weights.py)."""

from __future__ import annotations

from pathlib import Path

from blender_stchain.engine.models.registry import component_of
from blender_stchain.engine.weights import load_component


def load_model(cls, folder: Path):
    """Strictly load the checkpoint folder holding ``cls`` (the component is found from the class)."""
    model = load_component(folder, component_of(cls))
    assert type(model) is cls, f"{folder} built {type(model).__name__}, expected {cls.__name__}"
    return model
