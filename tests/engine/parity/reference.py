"""Reference-only pieces of the preprocessing that the parity checks need and the engine does not:
reading the processor config from a checkpoint's ``preprocessor_config.json``, the plain
BitImageProcessor call on whole images, and the reference's rule for skipping background removal."""

import numpy as np
import torch

from blender_stchain.contracts.errors import FootageError
from blender_stchain.engine.footage import preprocess as pp


def processor_config(cfg: dict) -> pp.ProcessorConfig:
    """The settings that matter from ``preprocessor_config.json`` (bicubic resize + centre crop only)."""
    if cfg.get("resample", 3) != 3 or not all(cfg.get(k, True) for k in ("do_resize", "do_center_crop")):
        raise FootageError("DINOv2 preprocessor: only bicubic resize + centre crop configs are supported")
    crop = cfg["crop_size"]
    return pp.ProcessorConfig(
        shortest_edge=int(cfg["size"]["shortest_edge"]),
        crop_hw=(int(crop["height"]), int(crop["width"])),
        rescale_factor=float(cfg["rescale_factor"]),
        mean=tuple(cfg["image_mean"]),
        std=tuple(cfg["image_std"]),
    )


def dinov2_pixel_values(images: np.ndarray, cfg: pp.ProcessorConfig = pp.ProcessorConfig()) -> torch.Tensor:
    """The BitImageProcessor: uint8 (T, H, W, 3) -> pixel_values float32 (T, 3, 224, 224)."""
    return pp.normalise(pp.dinov2_crop(images, cfg), cfg)


def is_valid_alpha(alpha: np.ndarray) -> np.ndarray:
    """Per frame: at least 1% foreground and 1% background after thresholding at 127 (the reference's
    rule for skipping background removal). alpha (T, H, W) uint8 -> (T,) bool."""
    flat = alpha.reshape(len(alpha), -1)
    return ((flat > 127).mean(axis=1) >= 0.01) & ((flat <= 127).mean(axis=1) >= 0.01)
