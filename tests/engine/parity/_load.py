"""The one place parity checks load a fixture checkpoint (the lead swaps this for engine/weights.py)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file


def load_model(cls, folder: Path):
    """Build ``cls.from_config(folder/config.json)`` and load its single safetensors file strictly."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    (weights,) = sorted(Path(folder).glob("*.safetensors"))
    model = cls.from_config(cfg)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval()
