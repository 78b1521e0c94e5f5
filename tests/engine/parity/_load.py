"""The one place parity checks load a fixture checkpoint: through the product loader (engine/weights.py)."""

from __future__ import annotations

from pathlib import Path

from blender_stchain.engine.weights import COMPONENTS, load_component


def load_model(cls, folder: Path):
    """Strictly load the checkpoint folder holding ``cls`` (the component is found from the class)."""
    name = next(c.name for c in COMPONENTS.values() if c.builder.endswith(f":{cls.__name__}"))
    model = load_component(folder, name)
    assert type(model) is cls, f"{folder} built {type(model).__name__}, expected {cls.__name__}"
    return model
