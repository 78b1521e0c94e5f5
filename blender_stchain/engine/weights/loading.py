"""Recognising a folder's model, building it from its own config.json and loading it strictly."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from ...contracts.errors import WeightsError
from ...contracts.safetensors_io import PICKLE_SUFFIXES, identity, read_header
from .catalogue import (
    COMPONENTS,
    RANDOM_KEY,
    REPOS,
    Component,
    component,
    component_folder,
)
from .tensors import load_tensors

# --------------------------------------------------------------------------- recognising a folder's model

def _kind_from_config(cfg: dict) -> str | None:
    cls = str(cfg.get("_class_name", ""))
    if cls == "TripoSGDiTModel":
        return "transformer"
    if cls in ("TripoSGVAEModel", "Tripo2VAEModel"):
        return "vae"
    if cfg.get("model_type") == "dinov2":
        return "dinov2"
    if "inflated_layers" in cfg:
        return "denoiser"
    if "prediction_mode" in cfg or "in_extra_channels" in cfg:
        return "autoencoder"
    if "RectifiedFlow" in cls or "num_train_timesteps" in cfg:
        return "scheduler"
    if "image_processor_type" in cfg or "crop_size" in cfg:
        return "image preprocessor"
    return None


def _kind_from_keys(keys) -> str | None:
    keys = set(keys)
    if "embeddings.patch_embeddings.projection.weight" in keys:
        return "dinov2"
    if "decoder.proj_query.weight" in keys or "encoder.proj_in.weight" in keys:
        return "vae"
    if "proj_query.weight" in keys:
        return "autoencoder"
    if "blocks.0.attn1.to_q.weight" in keys:
        return "transformer"
    if "blocks.0.s_attn.to_q.weight" in keys:
        return "denoiser"
    return None


_KIND_TITLES = {c.name: c.title for c in COMPONENTS.values()} | {"dinov2": "DINOv2 image encoder"}


def _same_kind(expected: str, found: str) -> bool:
    dino = {"dinov2", "image_encoder_dinov2"}
    return found == expected or (found in dino and expected in dino)


def _wrong_model(folder: Path, comp: Component, found: str | None, what: str) -> None:
    if found is not None and not _same_kind(comp.name, found):
        title = _KIND_TITLES.get(found, found)
        raise WeightsError(f"{folder}: {what} contains the {title} ({found}), not the {comp.title} ({comp.name}); "
                           "wrong checkpoint in this folder")


# --------------------------------------------------------------------------- building and strict loading

def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise WeightsError(f"{folder}: missing file config.json")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WeightsError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return cfg


def _weights_path(folder: Path, comp: Component) -> Path:
    path = folder / comp.weights_file
    if path.is_file():
        return path
    pickles = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise WeightsError(f"{folder}: only a pickle checkpoint ({pickles[0]}) is here; it is refused because "
                           f"loading it can execute code; download the official {comp.weights_file}")
    raise WeightsError(f"{folder}: missing file {comp.weights_file}")


def build(name: str, cfg: dict, device="cpu"):
    """Construct ``name``'s model from an official config dict (on ``device``; "meta" allocates nothing)."""
    import torch

    from ..models.registry import build_model

    component(name)
    with torch.device(device):
        return build_model(name, cfg)


def _list(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def verify_keys(path: Path, expected: dict, stored: dict) -> None:
    """One error listing missing, unexpected and mis-shaped keys (first few of each + counts)."""
    missing = expected.keys() - stored.keys()
    unexpected = stored.keys() - expected.keys()
    shaped = [f"{k} {tuple(stored[k])} != {tuple(expected[k])}" for k in sorted(expected.keys() & stored.keys())
              if tuple(stored[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_list(unexpected)}")
    if shaped:
        problems.append(f"{len(shaped)} mis-shaped key(s): {'; '.join(shaped[:3])}")
    if problems:
        raise WeightsError(f"{path}: does not match its config.json: " + "; ".join(problems))


def inspect_folder(folder: Path, comp: Component):
    """Validate config, header and key set of a component folder without loading tensor data."""
    cfg = read_config(folder)
    _wrong_model(folder, comp, _kind_from_config(cfg), "config.json")
    path = _weights_path(folder, comp)
    header = read_header(path)
    _wrong_model(folder, comp, _kind_from_keys(header.tensors), path.name)
    try:
        expected = _expected_shapes(comp.name, json.dumps(cfg, sort_keys=True))
    except WeightsError:
        raise
    except Exception as e:  # a config the model class cannot build from
        raise WeightsError(f"{folder / 'config.json'}: cannot build the {comp.title} ({type(e).__name__}: {e})") from None
    verify_keys(path, expected, {k: i.shape for k, i in header.tensors.items()})
    return cfg, path, header


@functools.lru_cache(maxsize=64)
def _expected_shapes(name: str, config_json: str) -> dict:
    """Key -> shape of ``name`` built from a config on the meta device. Cached: a run checks the same
    folders several times (preflight, check, load) and each meta build costs ~0.1 s."""
    meta = build(name, json.loads(config_json), "meta")
    return {k: tuple(v.shape) for k, v in meta.state_dict().items()}


# parts whose every Linear runs under autocast: their weights can be stored in the compute precision
# (DINOv2 runs in fp32 as in the reference; the stage-II query pass is an fp32 island)
COMPUTE_PRECISION_PARTS = ("transformer", "denoiser", "vae")


def linear_keys(model: "torch.nn.Module") -> set[str]:
    """State-dict keys of the Linear layers' parameters (what is stored in the compute precision)."""
    import torch

    return {f"{name}.{p}" if name else p for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            for p, _ in m.named_parameters(recurse=False)}


def storage_dtypes(name: str, model: "torch.nn.Module", compute) -> dict:
    """Key -> the dtype a floating tensor of part ``name`` is stored in: ``compute`` for the Linear
    layers of the autocast-only parts, fp32 for everything else."""
    import torch

    low = linear_keys(model) if name in COMPUTE_PRECISION_PARTS and compute != torch.float32 else set()
    return {k: compute if k in low else torch.float32 for k, v in model.state_dict().items() if v.is_floating_point()}


def load_component(root_or_folder: str | os.PathLike, name: str, device="cpu", dtype=None, compute=None):
    """Build ``name`` from its folder's config.json and load its safetensors strictly; returns an eval module.

    Read on the host, cast there, then moved to ``device``: a part never sits on the device in a wider
    dtype than it is kept in. Built on the meta device and filled by assignment, so a full-size model is
    never allocated twice. ``dtype`` (default float32) applies to floating-point tensors; ``compute``
    (bf16/fp16) to the Linear layers of the parts that run only under autocast (``backbone.parts``).
    """
    import torch

    comp = component(name)
    folder = component_folder(root_or_folder, name)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: missing folder for the {comp.title}; run `python -m blender_stchain "
                           "weights download` or pass the weights folder")
    cfg, path, _ = inspect_folder(folder, comp)
    model = build(name, cfg, "meta")
    stored = storage_dtypes(name, model, compute or dtype or torch.float32)
    dtype = dtype or torch.float32
    def cast(key, v):  # on the host, one tensor at a time as it is read
        return v.to(stored.get(key, dtype) if compute else dtype) if v.is_floating_point() else v

    tensors = load_tensors(path, device="cpu", convert=cast)
    model.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model = build(name, cfg, "cpu")  # a module with computed buffers: build for real, keep the stored dtypes
        model.load_state_dict(tensors, strict=True, assign=True)
    return model.to(device).eval()


def weight_identity(root_or_folder: str | os.PathLike, name: str) -> dict:
    """For result metadata: part, file, sha256(header + size), licence, smoke-test flag."""
    comp = component(name)
    path = component_folder(root_or_folder, name) / comp.weights_file
    header = read_header(path)
    return {"part": name, "repo": REPOS[comp.repo_dir], "file": str(path), "sha256_header": identity(path),
            "licence": comp.licence, "random": RANDOM_KEY in header.metadata}
