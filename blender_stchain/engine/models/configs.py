"""Official full-size configs and the ``small`` / ``tiny`` variants of each backbone component.

- ``full``: the released ``config.json`` contents (docs/architecture.md 4).
- ``tiny``: the reference-fixture sizes (width 64, 32 tokens per frame): unit tests only.
- ``small``: runs the whole pipeline on 2 CPU cores in seconds per step. DiT/denoiser width 256,
  4 heads (head dim 64), 5 layers (odd, so the U-Net skips are exercised), VAE decoder width 256 with
  4 self layers, autoencoder width 256 with 2 layers. Latent channels (64) keep the released
  interface; the context width (256) equals the small DINOv2's hidden size, so the small parts plug
  together. 1024 latent tokens per frame (``num_tokens_nominal``; tokens are an input size, not a
  weight) keep the released cost structure, where the inflated stage-I attention dominates a run
  (~0.5 PFLOP per step at full size): with fewer tokens the denoiser becomes cheaper than the surface
  work and a CPU chain-vs-ActionMesh comparison stops saying anything about the real model. A guided
  denoiser step over 16 frames then takes ~20 s on 2 CPU cores, an unguided one ~11 s.
"""

from __future__ import annotations

import copy

from ...contracts.errors import WeightsError

# Keys in official config.json files that do not change the architecture.
NON_ARCHITECTURAL = {"verbose", "clear_autocast", "compile_blocks", "compile_mode", "num_tokens_nominal",
                     "temporal_context_size"}

_CONFIGS = {
    "transformer": {
        "full": {"_class_name": "TripoSGDiTModel", "width": 2048, "num_attention_heads": 16, "num_layers": 21,
                 "in_channels": 64, "cross_attention_dim": 1024, "use_cross_attention_2": False,
                 "cross_attention_2_dim": None},
        "small": {"_class_name": "TripoSGDiTModel", "width": 256, "num_attention_heads": 4, "num_layers": 5,
                  "in_channels": 64, "cross_attention_dim": 256, "use_cross_attention_2": False,
                  "cross_attention_2_dim": None},
        "tiny": {"_class_name": "TripoSGDiTModel", "width": 64, "num_attention_heads": 4, "num_layers": 7,
                 "in_channels": 8, "cross_attention_dim": 32, "use_cross_attention_2": False,
                 "cross_attention_2_dim": None},
    },
    "vae": {
        "full": {"_class_name": "TripoSGVAEModel", "in_channels": 3, "latent_channels": 64,
                 "num_attention_heads": 8, "width_encoder": 512, "width_decoder": 1024, "num_layers_encoder": 8,
                 "num_layers_decoder": 16, "embedding_type": "frequency", "embed_frequency": 8,
                 "embed_include_pi": False},
        "small": {"_class_name": "TripoSGVAEModel", "in_channels": 3, "latent_channels": 64,
                  "num_attention_heads": 4, "width_encoder": 128, "width_decoder": 256, "num_layers_encoder": 2,
                  "num_layers_decoder": 4, "embedding_type": "frequency", "embed_frequency": 8,
                  "embed_include_pi": False},
        "tiny": {"_class_name": "TripoSGVAEModel", "in_channels": 3, "latent_channels": 8,
                 "num_attention_heads": 4, "width_encoder": 32, "width_decoder": 64, "num_layers_encoder": 2,
                 "num_layers_decoder": 2, "embedding_type": "frequency", "embed_frequency": 8,
                 "embed_include_pi": False},
    },
    "denoiser": {
        "full": {"num_tokens_nominal": 2048, "temporal_context_size": 16, "in_channels": 64, "num_layers": 21,
                 "num_attention_heads": 16, "width": 2048, "mlp_ratio": 4.0, "cross_attention_dim": 1024,
                 "inflated_layers": list(range(21))},
        "small": {"num_tokens_nominal": 1024, "temporal_context_size": 16, "in_channels": 64, "num_layers": 5,
                  "num_attention_heads": 4, "width": 256, "mlp_ratio": 4.0, "cross_attention_dim": 256,
                  "inflated_layers": list(range(5))},
        "tiny": {"num_tokens_nominal": 32, "temporal_context_size": 4, "in_channels": 8, "num_layers": 7,
                 "num_attention_heads": 4, "width": 64, "mlp_ratio": 4.0, "cross_attention_dim": 32,
                 "inflated_layers": list(range(7))},
    },
    "autoencoder": {
        "full": {"temporal_context_size": 16, "in_channels": 3, "in_extra_channels": 3, "out_dim": 3,
                 "latent_channels": 64, "width": 1024, "num_layers": 16, "num_attention_heads": 8,
                 "embed_frequency": 8, "embed_include_pi": False, "prediction_mode": "direct"},
        "small": {"temporal_context_size": 16, "in_channels": 3, "in_extra_channels": 3, "out_dim": 3,
                  "latent_channels": 64, "width": 256, "num_layers": 2, "num_attention_heads": 4,
                  "embed_frequency": 8, "embed_include_pi": False, "prediction_mode": "direct"},
        "tiny": {"temporal_context_size": 4, "in_channels": 3, "in_extra_channels": 3, "out_dim": 3,
                 "latent_channels": 8, "width": 64, "num_layers": 2, "num_attention_heads": 4,
                 "embed_frequency": 8, "embed_include_pi": False, "prediction_mode": "direct"},
    },
}

COMPONENTS = tuple(_CONFIGS)
SIZES = ("tiny", "small", "full")


def config(component: str, size: str) -> dict:
    """A fresh copy of the config dict for ``component`` (transformer|vae|denoiser|autoencoder) at ``size``."""
    if component not in _CONFIGS or size not in SIZES:
        raise ValueError(f"unknown model config {component!r}/{size!r}: components {COMPONENTS}, sizes {SIZES}")
    return copy.deepcopy(_CONFIGS[component][size])


def architecture(cfg: dict, known: set[str], what: str) -> dict:
    """The architectural kwargs of an official config; an unknown key means a different model."""
    kw = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in NON_ARCHITECTURAL}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise WeightsError(f"{what} config has unexpected keys {unknown}: is this the right checkpoint folder?")
    return kw
