"""DINOv2 model: official shapes and parameter count, configs, and a real-footage forward."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from blender_stchain.contracts.errors import WeightsError
from blender_stchain.engine.footage.preprocess import prepare_frames
from blender_stchain.engine.models.dinov2 import (
    DINOV2_CONFIGS,
    Dinov2Config,
    Dinov2Model,
)
from tests.conftest import DATA, SHARED


def test_full_size_matches_dinov2_large_checkpoint_layout():
    with torch.device("meta"):
        model = Dinov2Model.from_config(DINOV2_CONFIGS["full"])
    sd = model.state_dict()
    n = sum(p.numel() for p in model.parameters())
    print(f"dinov2 full: {n:,} parameters in {len(sd)} tensors")
    assert n == 304_368_640 and len(sd) == 439  # facebook/dinov2-large's released checkpoint
    expected = {
        "embeddings.cls_token": (1, 1, 1024),
        "embeddings.mask_token": (1, 1024),
        "embeddings.position_embeddings": (1, 1370, 1024),
        "embeddings.patch_embeddings.projection.weight": (1024, 3, 14, 14),
        "encoder.layer.23.attention.attention.query.weight": (1024, 1024),
        "encoder.layer.23.attention.attention.value.bias": (1024,),
        "encoder.layer.0.attention.output.dense.weight": (1024, 1024),
        "encoder.layer.0.layer_scale1.lambda1": (1024,),
        "encoder.layer.0.mlp.fc1.weight": (4096, 1024),
        "encoder.layer.0.mlp.fc2.weight": (1024, 4096),
        "encoder.layer.5.layer_scale2.lambda1": (1024,),
        "layernorm.bias": (1024,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key


def test_tiny_config_is_the_fixture_config():
    fixture = json.loads((SHARED / "fixtures" / "reference" / "dinov2" / "checkpoint" / "config.json").read_text())
    assert Dinov2Config.from_dict(DINOV2_CONFIGS["tiny"]) == Dinov2Config.from_dict(fixture)


def test_unsupported_config_is_a_clear_error():
    with pytest.raises(WeightsError, match="hidden_act 'gelu_fast' is not supported"):
        Dinov2Config.from_dict({**DINOV2_CONFIGS["full"], "hidden_act": "gelu_fast"})


def test_swiglu_mlp_computes_silu_gate_times_value():
    """dinov2-giant's MLP: weights_out(silu(x1) * x2) with [x1 | x2] = weights_in(x), 8-rounded 2/3 width."""
    torch.manual_seed(0)
    model = Dinov2Model.from_config({**DINOV2_CONFIGS["tiny"], "use_swiglu_ffn": True})
    mlp = model.encoder.layer[0].mlp
    assert mlp.weights_in.weight.shape == (2 * 88, 32)  # int(128 * 2 / 3) = 85 -> 88
    x = torch.randn(3, 32)
    w, b = mlp.weights_in.weight, mlp.weights_in.bias
    gate, value = x @ w[:88].T + b[:88], x @ w[88:].T + b[88:]
    expect = (gate * torch.sigmoid(gate) * value) @ mlp.weights_out.weight.T + mlp.weights_out.bias
    assert torch.allclose(mlp(x), expect, atol=1e-6)


def test_small_model_on_real_frames():
    frames = np.stack([np.asarray(Image.open(DATA / "rgba_frames" / "davis_camel" / f"{i:02d}.png")) for i in (0, 8)])
    pixels = prepare_frames(frames).pixel_values
    torch.manual_seed(0)
    model = Dinov2Model.from_config(DINOV2_CONFIGS["small"]).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        out = model(pixels)
        single = model(pixels[1:])
    assert out.shape == (2, 257, DINOV2_CONFIGS["small"]["hidden_size"]) and torch.isfinite(out).all()
    err = float((out[1:] - single).abs().max())
    print(f"batch vs single-frame max|d| = {err:.2e}")
    assert err < 1e-5  # frames are encoded independently
    assert float((out[0] - out[1]).abs().max()) > 1e-3  # different frames give different tokens


def test_position_table_is_kept_at_training_resolution_and_resized_otherwise():
    model = Dinov2Model.from_config(DINOV2_CONFIGS["tiny"])
    emb = model.embeddings
    assert emb.interpolated_positions(518, 518) is emb.position_embeddings
    table = emb.interpolated_positions(224, 280)
    assert table.shape == (1, 1 + 16 * 20, 32)
    assert torch.equal(table[:, 0], emb.position_embeddings[:, 0])  # the CLS entry is not interpolated
