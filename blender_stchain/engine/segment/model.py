"""Build, strictly load and randomly initialise the SAM 2.1 video model (``transformers.Sam2VideoModel``).

Why ``transformers``: it implements the SAM 2.1 video predictor in plain PyTorch, reads the official
Hugging Face ``config.json`` + ``model.safetensors`` without conversion, and needs no torchvision
(README, Dependencies). We never call ``from_pretrained``: the model is built from the folder's own
config on the meta device and filled from our bounds-checked safetensors reader, strictly (every key
and shape must match), so a wrong or truncated checkpoint is one clear ``WeightsError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...contracts.errors import WeightsError
from ...contracts.safetensors_io import read_header
from ..weights.catalogue import RANDOM_KEY
from ..weights.loading import read_config, verify_keys
from ..weights.tensors import load_tensors, write_streaming
from . import catalogue

_MISSING_LIB = ("segmentation needs the transformers library (Sam2VideoModel): "
                "pip install 'transformers>=5.20,<6' (or blender_stchain[segment])")


def _transformers():
    try:
        from transformers import Sam2VideoConfig, Sam2VideoModel
    except ImportError:
        raise WeightsError(_MISSING_LIB) from None
    return Sam2VideoConfig, Sam2VideoModel


def config_from_dict(cfg: dict):
    Sam2VideoConfig, _ = _transformers()
    if cfg.get("model_type") != "sam2_video":
        raise WeightsError(f"config.json has model_type {cfg.get('model_type')!r}, not 'sam2_video': "
                           "not a SAM 2.1 video checkpoint")
    body = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "dtype")}
    try:
        return Sam2VideoConfig(**body)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"config.json cannot configure SAM 2.1 ({type(e).__name__}: {e})") from None


def build(cfg: dict, device="cpu"):
    """An uninitialised ``Sam2VideoModel`` for ``cfg`` on ``device`` ("meta" allocates nothing)."""
    import torch

    _, Sam2VideoModel = _transformers()
    config = config_from_dict(cfg)
    with torch.device(device):
        return Sam2VideoModel(config)


def inspect(folder: Path):
    """Config, weights path and header, checked against each other without reading tensor data."""
    cfg = read_config(folder)
    path = folder / catalogue.WEIGHTS_FILE
    if not path.is_file():
        pickles = sorted(p.name for p in folder.glob("*.pt")) + sorted(p.name for p in folder.glob("*.bin"))
        hint = f" (only {pickles[0]}, a pickle, which is refused)" if pickles else ""
        raise WeightsError(f"{folder}: missing file {catalogue.WEIGHTS_FILE}{hint}; run `python -m "
                           f"blender_stchain weights download --parts {folder.name}`")
    header = read_header(path)
    meta = build(cfg, "meta")
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    verify_keys(path, expected, {k: i.shape for k, i in header.tensors.items()})
    return cfg, path, header


def load(root: str | os.PathLike, name: str = catalogue.DEFAULT_MODEL, device="cpu"):
    """-> (eval ``Sam2VideoModel``, is_random). Strict: any missing, extra or mis-shaped key is an error."""
    import torch

    folder = catalogue.folder(root, name)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no SAM 2.1 checkpoint; run `python -m blender_stchain weights download "
                           f"--parts {name}` (Apache-2.0, {catalogue.REPOS[name]})")
    cfg, path, header = inspect(folder)
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in load_tensors(path, str(device)).items()}
    model = build(cfg, "meta")
    model.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model = build(cfg, device)  # computed (non-persistent) buffers: build for real, then fill
        model.load_state_dict(tensors, strict=True)
    return model.eval().to(torch.device(device)), RANDOM_KEY in header.metadata


# ----------------------------------------------------------------------------------------- random weights

def random_config(size: str = "tiny") -> dict:
    """config.json contents. ``full`` is the official hiera-tiny architecture (transformers' defaults);
    ``tiny``/``small`` shrink every width but keep the official keys (128/256 px input)."""
    Sam2VideoConfig, _ = _transformers()
    if size == "full":
        cfg = Sam2VideoConfig().to_dict()
    else:
        s = 128 if size == "tiny" else 256
        vision = {"model_type": "sam2_vision_model", "fpn_hidden_size": 128,
                  "backbone_channel_list": [128, 64, 32, 16],
                  "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
                  "backbone_config": {
                      "model_type": "sam2_hiera_det_model", "hidden_size": 16, "num_attention_heads": 1,
                      "image_size": [s, s], "window_positional_embedding_background_size": [4, 4],
                      "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [16, 32, 64, 128],
                      "num_attention_heads_per_stage": [1, 1, 2, 4], "window_size_per_stage": [8, 4, 4, 2],
                      "global_attention_blocks": [3]}}
        cfg = Sam2VideoConfig(
            vision_config=vision, image_size=s,
            # memory_encoder_output_channels stays 64: transformers hard-codes the memory width of the
            # cross-attention; hidden 128 keeps the official hidden/memory split (object pointers in 2 tokens)
            prompt_encoder_config={"hidden_size": 128, "image_size": s, "patch_size": 16},
            mask_decoder_config={"hidden_size": 128, "mlp_dim": 64, "num_attention_heads": 2,
                                 "iou_head_hidden_dim": 32},
            memory_attention_hidden_size=128, memory_attention_num_layers=1,
            memory_attention_feed_forward_hidden_size=128, memory_attention_rope_feat_sizes=[s // 16, s // 16],
            memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
            memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1,
        ).to_dict()
    cfg["architectures"] = ["Sam2VideoModel"]
    return cfg


OBJECT_SCORE_BIAS = "mask_decoder.pred_obj_score_head.proj_out.bias"


def _random(name: str, key: str, shapes: dict, seed: int):
    """Like every random part, except that the object is always 'present' (score bias +4): random masks
    are then mixed, not the all-empty masks SAM 2.1 gives for an absent object, so smoke runs exercise
    the whole path."""
    from ..weights.random_checkpoints import random_tensor

    t = random_tensor(name, key, shapes[key], shapes, seed)
    return t.abs() + 4.0 if key == OBJECT_SCORE_BIAS else t


def write_random(out_root: str | os.PathLike, size: str = "tiny", seed: int = 0,
                 name: str = catalogue.DEFAULT_MODEL) -> Path:
    """ROOT/<name>/{config.json, model.safetensors} with reproducible random tensors (smoke tests)."""
    folder = Path(out_root) / name
    cfg = random_config(size)
    shapes = {k: tuple(v.shape) for k, v in build(cfg, "meta").state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", RANDOM_KEY: json.dumps({"size": size, "seed": seed})}
    write_streaming(folder / catalogue.WEIGHTS_FILE, [(k, "F32", s) for k, s in shapes.items()],
                    lambda k: _random(name, k, shapes, seed), metadata)
    tmp = folder / "config.json.part"
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, folder / "config.json")
    return folder

