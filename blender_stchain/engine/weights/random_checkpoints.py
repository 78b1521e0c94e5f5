"""Random-weight checkpoints in the official layouts (tests, smoke runs, benchmarks).

``make_random(out_root, size, seed)`` writes the same tree as a real weights root (see ``weights``), with
the official config keys and state-dict keys, so everything downstream runs unchanged. Compute does not
depend on weight values, so ``full`` is what benchmarks time. Every tensor is drawn from its own generator
seeded by (seed, part, key): the files are reproducible and written tensor by tensor (a 5.8 GB model
never sits in RAM). Norm weights ~ U(0.5, 1.5) and norm biases ~ N(0, 0.1^2), like the reference
fixtures, so a forgotten affine cannot hide. Every safetensors file carries ``stchain_random`` metadata:
anything made from these weights is labelled a smoke test.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path

import torch

from ..models import configs as model_configs
from .catalogue import COMPONENTS, RANDOM_KEY
from .loading import build
from .tensors import write_streaming

SIZES = model_configs.SIZES
DIFFUSERS_VERSION = "0.36.0"
SCHEDULER_CONFIG = {"_class_name": "RectifiedFlowScheduler", "_diffusers_version": DIFFUSERS_VERSION,
                    "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
PREPROCESSOR_CONFIG = {  # BitImageProcessor as shipped with DINOv2 (short side 256, centre crop 224)
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor", "image_std": [0.229, 0.224, 0.225], "resample": 3,
    "rescale_factor": 1 / 255, "size": {"shortest_edge": 256}}
MODEL_INDEX = {
    "_class_name": "TripoSGPipeline", "_diffusers_version": DIFFUSERS_VERSION,
    "feature_extractor_dinov2": ["transformers", "BitImageProcessor"],
    "image_encoder_dinov2": ["transformers", "Dinov2Model"],
    "scheduler": ["triposg.schedulers.scheduling_rectified_flow", "RectifiedFlowScheduler"],
    "transformer": ["triposg.models.transformers.triposg_transformer", "TripoSGDiTModel"],
    "vae": ["triposg.models.autoencoders.autoencoder_kl_triposg", "TripoSGVAEModel"],
}


def component_config(name: str, size: str) -> dict:
    """The official-key config.json contents of a part at ``size``."""
    if name in ("dinov2", "image_encoder_dinov2"):
        from ..models.dinov2 import DINOV2_CONFIGS

        return {**DINOV2_CONFIGS[size]}
    cfg = model_configs.config(name, size)
    if name in ("transformer", "vae"):
        cfg.setdefault("_diffusers_version", DIFFUSERS_VERSION)
    return cfg


def _generator(seed: int, part: str, key: str, device="cpu") -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{part}:{key}".encode()).digest()
    return torch.Generator(device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def random_tensor(part: str, key: str, shape: tuple[int, ...], shapes: dict, seed: int, device="cpu") -> torch.Tensor:
    """One tensor, reproducible from (seed, part, key, device type); the distribution follows the key's
    role. ``device`` makes it there (the GPU bench builds full-size weights in memory this way)."""
    g = _generator(seed, part, key, device)
    rand = functools.partial(torch.rand, shape, generator=g, device=device)
    randn = functools.partial(torch.randn, shape, generator=g, device=device)
    leaf = key.rsplit(".", 2)[-2] if "." in key else key
    if "norm" in leaf and len(shape) == 1:
        if key.endswith("weight"):
            return rand() + 0.5
        return randn() * 0.1
    if key.endswith("lambda1"):  # DINOv2 layer scale
        return rand() + 0.5
    if key.endswith(("cls_token", "mask_token")):
        return randn()
    if key.endswith("position_embeddings"):
        return randn() * 0.5
    weight_shape = shape if len(shape) > 1 else shapes.get(key[: -len("bias")] + "weight", ())
    fan_in = math.prod(weight_shape[1:]) if len(weight_shape) > 1 else 100
    bound = 1.0 / math.sqrt(max(fan_in, 1))  # PyTorch's default Linear/Conv bound
    out = (rand() * 2 - 1) * bound
    if key.endswith("proj_query.weight"):
        out *= _low_frequency_columns(shape[1]).to(device)
    return out


def _low_frequency_columns(width: int, keep: int = 2, freqs: int = 8) -> torch.Tensor:
    """Column mask of a point embedding keeping xyz, the first ``keep`` Fourier octaves and any extra
    channels (normals). With all 8 octaves a random decoder is noise at the grid scale: thousands of
    specks that no real shape has. Smooth random fields give blob-like smoke-test surfaces instead."""
    mask = torch.ones(width)
    for block in (3, 3 + 3 * freqs):  # the sin block, then the cos block (coordinate-major)
        for i in range(3):
            mask[block + i * freqs + keep:block + (i + 1) * freqs] = 0
    return mask


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(part, path)


def write_component(out_root: Path, name: str, size: str, seed: int) -> Path:
    """Write one part's config.json and safetensors; returns the folder."""
    comp = COMPONENTS[name]
    folder = Path(out_root) / comp.relpath
    cfg = component_config(name, size)
    shapes = {k: tuple(v.shape) for k, v in build(name, cfg, "meta").state_dict().items()}
    part_id = "dinov2" if name == "image_encoder_dinov2" else name  # both DINOv2 copies hold the same weights
    metadata = {"format": "pt", RANDOM_KEY: json.dumps({"size": size, "seed": seed})}
    folder.mkdir(parents=True, exist_ok=True)
    write_streaming(folder / comp.weights_file, [(k, "F32", s) for k, s in shapes.items()],
                    lambda k: random_tensor(part_id, k, shapes[k], shapes, seed), metadata)
    _write_json(folder / "config.json", cfg)
    return folder


def make_random(out_root: str | os.PathLike, size: str = "tiny", seed: int = 0,
                parts: tuple[str, ...] | None = None) -> Path:
    """Write a complete random weights root at ``size`` (tiny|small|full); returns the root."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    root = Path(out_root)
    for name in parts or tuple(COMPONENTS):
        write_component(root, name, size, seed)
    _write_json(root / "TripoSG" / "model_index.json", MODEL_INDEX)
    _write_json(root / "TripoSG" / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    for rel in ("TripoSG/feature_extractor_dinov2", "dinov2-large"):
        _write_json(root / rel / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    return root
