"""Every parameter shape of every backbone model follows the config rules of engine/models/shapes.py.

A property test builds each model on the meta device from random valid configs; the rules themselves
are checked against the reference: every checkpoint of every fixture set (written by the reference
code) has exactly the shapes the rules give for its own config.json.
"""

import json

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from blender_stchain.contracts.errors import WeightsError
from blender_stchain.engine.models import shapes
from blender_stchain.engine.models.configs import config
from blender_stchain.engine.models.dinov2 import ACTIVATIONS
from blender_stchain.engine.models.registry import build_model

from tests.engine.parity import fixture_sets

RULES = {"transformer": shapes.triposg_dit_shapes, "vae": shapes.vae_shapes, "denoiser": shapes.denoiser_shapes,
         "autoencoder": shapes.autoencoder_shapes, "dinov2": shapes.dinov2_shapes}
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def built_shapes(component: str, cfg: dict) -> dict:
    with torch.device("meta"):
        model = build_model(component, cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def assert_follows_rules(component: str, cfg: dict):
    got, want = built_shapes(component, cfg), RULES[component](cfg)
    assert got.keys() == want.keys(), (sorted(got.keys() - want.keys())[:3], sorted(want.keys() - got.keys())[:3])
    wrong = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not wrong, wrong


@st.composite
def width_heads(draw, even_head_dim=False, divisible=False):
    """Widths that heads need not divide (the projections are then heads·(width//heads) wide)."""
    heads = draw(st.integers(1, 6))
    head_dim = draw(st.integers(1, 12)) * 2 if even_head_dim else draw(st.integers(1, 24))
    extra = 0 if divisible else draw(st.integers(0, heads - 1))
    return heads * head_dim + extra, heads


@st.composite
def dit_configs(draw):
    width, heads = draw(width_heads())
    cross2 = draw(st.booleans())
    return {"_class_name": "TripoSGDiTModel", "width": width, "num_attention_heads": heads,
            "num_layers": draw(st.integers(1, 9)), "in_channels": draw(st.integers(1, 9)),
            "cross_attention_dim": draw(st.integers(1, 48)), "use_cross_attention_2": cross2,
            "cross_attention_2_dim": draw(st.integers(1, 24)) if cross2 else None}


@st.composite
def denoiser_configs(draw):
    width, heads = draw(width_heads(even_head_dim=True))
    layers = draw(st.integers(1, 9))
    return {"num_tokens_nominal": 8, "temporal_context_size": 4, "width": width, "num_attention_heads": heads,
            "num_layers": layers, "in_channels": draw(st.integers(1, 9)),
            "mlp_ratio": draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.7, 3.0, 4.0, 4.5])),
            "cross_attention_dim": draw(st.integers(1, 48)),
            "inflated_layers": sorted(draw(st.sets(st.integers(0, layers - 1))))}


@st.composite
def vae_configs(draw):
    heads = draw(st.integers(1, 5))
    enc = heads * draw(st.integers(1, 12)) + draw(st.integers(0, heads - 1))
    dec = heads * draw(st.integers(1, 12)) + draw(st.integers(0, heads - 1))
    return {"_class_name": "TripoSGVAEModel", "in_channels": draw(st.integers(1, 4)),
            "latent_channels": draw(st.integers(1, 16)), "num_attention_heads": heads, "width_encoder": enc,
            "width_decoder": dec, "num_layers_encoder": draw(st.integers(0, 4)),
            "num_layers_decoder": draw(st.integers(0, 4)), "embedding_type": "frequency",
            "embed_frequency": draw(st.integers(0, 10)), "embed_include_pi": draw(st.booleans())}


@st.composite
def autoencoder_configs(draw):
    heads, width = draw(st.integers(1, 6)), 4 * draw(st.integers(1, 24))
    assume(width // heads >= 2 and (width // heads) % 2 == 0)  # RoPE needs an even head dim
    return {"temporal_context_size": 4, "in_channels": 3, "in_extra_channels": draw(st.sampled_from([0, 3])),
            "out_dim": draw(st.integers(1, 4)), "latent_channels": draw(st.integers(1, 16)), "width": width,
            "num_layers": draw(st.integers(0, 4)), "num_attention_heads": heads,
            "embed_frequency": draw(st.integers(0, 10)), "embed_include_pi": draw(st.booleans()),
            "prediction_mode": "direct"}


@st.composite
def dinov2_configs(draw):
    width, heads = draw(width_heads(divisible=True))
    patch = draw(st.sampled_from([2, 4, 8, 14]))
    return {"hidden_size": width, "num_attention_heads": heads, "num_hidden_layers": draw(st.integers(0, 3)),
            "mlp_ratio": draw(st.sampled_from([1, 2, 2.5, 3, 4])), "patch_size": patch,
            "image_size": patch * draw(st.integers(1, 8)), "num_channels": draw(st.integers(1, 4)),
            "qkv_bias": draw(st.booleans()), "use_swiglu_ffn": draw(st.booleans()),
            "use_mask_token": draw(st.booleans()), "hidden_act": draw(st.sampled_from(sorted(ACTIVATIONS)))}


@SETTINGS
@given(dit_configs())
def test_triposg_dit_shapes_follow_the_rules(cfg):
    assert_follows_rules("transformer", cfg)


@SETTINGS
@given(denoiser_configs())
def test_denoiser_shapes_follow_the_rules(cfg):
    assert_follows_rules("denoiser", cfg)


@SETTINGS
@given(vae_configs())
def test_vae_shapes_follow_the_rules(cfg):
    assert_follows_rules("vae", cfg)


@SETTINGS
@given(autoencoder_configs())
def test_autoencoder_shapes_follow_the_rules(cfg):
    assert_follows_rules("autoencoder", cfg)


@SETTINGS
@given(dinov2_configs())
def test_dinov2_shapes_follow_the_rules(cfg):
    assert_follows_rules("dinov2", cfg)


@pytest.mark.parametrize("component", ["transformer", "vae", "denoiser", "autoencoder"])
@pytest.mark.parametrize("size", ["tiny", "small", "full"])
def test_catalogue_configs_follow_the_rules(component, size):
    assert_follows_rules(component, config(component, size))


def test_denoiser_time_projection_is_four_widths_whatever_the_mlp_ratio():
    cfg = {**config("denoiser", "tiny"), "mlp_ratio": 2.0}
    got = built_shapes("denoiser", cfg)
    assert got["time_proj.linear_1.weight"] == (256, 64) and got["blocks.0.ff.net.0.proj.weight"] == (128, 64)


def test_absent_keys_take_the_reference_defaults():
    """The reference classes' defaults are the released configs (the denoiser inflates layers 0..20)."""
    full = config("denoiser", "full")
    assert shapes.denoiser_dims({"width": 64, "num_attention_heads": 4}) == shapes.denoiser_dims(
        {**full, "width": 64, "num_attention_heads": 4})
    assert shapes.dinov2_shapes({})["embeddings.position_embeddings"] == (1, 257, 768)  # transformers defaults


@pytest.mark.parametrize("component,cfg,message", [
    ("denoiser", {"width": 60, "num_attention_heads": 4}, "must be even"),  # head dim 15: no RoPE pairs
    ("autoencoder", {"width": 66, "num_attention_heads": 3}, "width divisible by 4"),
    ("autoencoder", {"in_channels": 2}, "needs in_channels 3"),
])
def test_configs_the_reference_cannot_run_are_refused(component, cfg, message):
    with pytest.raises(WeightsError, match=message):
        build_model(component, {**config(component, "tiny"), **cfg})


CHECKPOINTS = {"triposg_dit/transformer": "transformer", "triposg_vae/vae": "vae",
               "actionmesh_denoiser/denoiser": "denoiser", "actionmesh_autoencoder/autoencoder": "autoencoder",
               "dinov2/checkpoint": "dinov2"}


@pytest.mark.parametrize("root", fixture_sets(), ids=lambda p: p.name)
def test_rules_match_every_checkpoint_the_reference_wrote(root):
    checked = 0
    optional = {"triposg_dit_cross2/transformer": "transformer"}  # only in some sets
    present = {sub: c for sub, c in optional.items() if (root / sub).is_dir()}
    for sub, component in {**CHECKPOINTS, **present}.items():
        folder = root / sub
        weights = next(folder.glob("*.safetensors"))
        with safe_open(str(weights), framework="np") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert stored == RULES[component](json.loads((folder / "config.json").read_text())), folder
        checked += 1
    assert checked == len(CHECKPOINTS) + len(present)


# --------------------------------------------------------------------------- every valid config also runs

def forward(component: str, cfg: dict) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(component, cfg).eval()
    g = torch.Generator().manual_seed(1)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    with torch.no_grad():
        if component == "transformer":
            ctx2 = rnd(2, 4, cfg["cross_attention_2_dim"]) if cfg["use_cross_attention_2"] else None
            ctx = rnd(2, 3, cfg["cross_attention_dim"])
            return model(rnd(2, 5, cfg["in_channels"]), torch.tensor([999.0, 3.0]), ctx, ctx2)
        if component == "denoiser":
            return model(rnd(2, 3, 4, cfg["in_channels"]), rnd(2, 3, 5, cfg["cross_attention_dim"]),
                         torch.tensor([[0.0, 1, 2], [4, 6, 8]]), torch.full((2,), 500.0),
                         torch.tensor([[1.0, 0, 0], [1, 1, 0]]))
        if component == "vae":
            c = cfg["in_channels"]
            post = model.encode(rnd(1, 9, 2 * c), torch.tensor([0, 3, 5]))
            return model.decode(post.mean, rnd(1, 7, c), chunk=4)
        if component == "autoencoder":
            return model(rnd(1, 3, 4, cfg["latent_channels"]), torch.tensor([[0.0, 1, 2]]), torch.zeros(1),
                         torch.tensor([[0.5, 1.0]]), rnd(1, 5, 6))
        p = cfg["patch_size"]
        return model(rnd(2, cfg["num_channels"], 2 * p, 3 * p))


EXPECTED_OUT = {"transformer": lambda c: (2, 5, c["in_channels"]), "denoiser": lambda c: (2, 3, 4, c["in_channels"]),
                "vae": lambda c: (1, 7, 1), "autoencoder": lambda c: (1, 2, 5, c["out_dim"]),
                "dinov2": lambda c: (2, 7, c["hidden_size"])}
STRATEGIES = {"transformer": dit_configs, "denoiser": denoiser_configs, "vae": vae_configs,
              "autoencoder": autoencoder_configs, "dinov2": dinov2_configs}


@pytest.mark.parametrize("component", STRATEGIES)
@settings(max_examples=12, deadline=None, derandomize=True)
@given(data=st.data())
def test_every_valid_config_runs_forward(component, data):
    """Runtime sizes follow the config too (odd widths pad the time sinusoid, heads need not divide widths)."""
    cfg = data.draw(STRATEGIES[component]())
    out = forward(component, cfg)
    assert out.shape == EXPECTED_OUT[component](cfg) and torch.isfinite(out).all()
