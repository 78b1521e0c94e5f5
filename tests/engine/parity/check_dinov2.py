"""Parity: DINOv2 (transformers Dinov2Model semantics) and its BitImageProcessor."""

import json

import numpy as np
import torch
from safetensors.torch import load_file

from blender_stchain.engine.footage import preprocess as pp
from blender_stchain.engine.models.dinov2 import Dinov2Model
from tests.engine.parity import assert_exact, assert_rel
from tests.engine.parity.reference import dinov2_pixel_values, processor_config

REL = 2e-5  # README tolerance for DINOv2 outputs


def load_dinov2(folder) -> Dinov2Model:
    """Build from config.json and load model.safetensors strictly (missing/unexpected keys fail)."""
    model = Dinov2Model.from_config(json.loads((folder / "config.json").read_text()))
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return model.eval()


def _check_processor(t, info, cfg, prefix):
    image = t[f"{prefix}image_uint8"]
    h, w = image.shape[:2]
    new_wh = pp.resized_size(w, h, cfg.shortest_edge)
    assert list(new_wh) == info[f"{prefix}resized_size_wh"], new_wh
    assert list(pp.centre_crop_offset(*new_wh, cfg.crop_hw)[::-1]) == info[f"{prefix}center_crop_top_left"]
    assert_exact(pp.resize_bicubic(image, new_wh), t[f"{prefix}resized_uint8"], f"{prefix}resized_uint8")
    if f"{prefix}cropped_uint8" in t:
        assert_exact(pp.dinov2_crop(image[None], cfg)[0], t[f"{prefix}cropped_uint8"], f"{prefix}cropped_uint8")
    pixels = dinov2_pixel_values(image[None], cfg)
    assert_exact(pixels, t[f"{prefix}pixel_values"], f"{prefix}pixel_values")
    return pixels


def check(case):
    t, info = case.tensors, case.info
    folder = case.dir / info["checkpoint_dir"]
    cfg = processor_config(json.loads((folder / "preprocessor_config.json").read_text()))
    model = load_dinov2(folder)
    torch.backends.cuda.matmul.allow_tf32 = False

    with torch.no_grad():
        pixels = _check_processor(t, info, cfg, "")
        emb = model.embeddings
        positions = emb.interpolated_positions(*pixels.shape[-2:])
        assert_rel(positions, t["interpolated_position_embeddings"], REL, "interpolated_position_embeddings")
        h = emb(pixels)
        assert_rel(h, t["embeddings_out"], REL, "embeddings_out")
        assert_rel(h, t["hidden_states_0"], REL, "hidden_states_0")
        for i, layer in enumerate(model.encoder.layer):
            h = layer(h)
            assert_rel(h, t[f"hidden_states_{i + 1}"], REL, f"hidden_states_{i + 1}")
        assert_rel(model(pixels), t["last_hidden_state"], REL, "last_hidden_state")

        c_pixels = _check_processor(t, info, cfg, "c_")
        assert_rel(model(c_pixels), t["c_last_hidden_state"], REL, "c_last_hidden_state")
        assert_rel(model(case.t("b_pixel_values")), t["b_last_hidden_state"], REL, "b_last_hidden_state")
    assert np.isfinite(t["last_hidden_state"]).all()
