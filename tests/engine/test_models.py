"""Backbone modules: official sizes, capture transparency, capture values, configs and precision."""

import math

import pytest
import torch

from blender_stchain.contracts.errors import WeightsError
from blender_stchain.engine.models.actionmesh_autoencoder import ActionMeshAutoencoder
from blender_stchain.engine.models.actionmesh_denoiser import ActionMeshDenoiser
from blender_stchain.engine.models.capture import (
    AnchorSelfAttention,
    DecoderCrossAttention,
    ImageCrossAttention,
)
from blender_stchain.engine.models.configs import config
from blender_stchain.engine.models.triposg_dit import TripoSGDiT
from blender_stchain.engine.models.triposg_vae import TripoSGVAE

MODELS = {"transformer": TripoSGDiT, "vae": TripoSGVAE, "denoiser": ActionMeshDenoiser,
          "autoencoder": ActionMeshAutoencoder}
# parameters and tensors of the released checkpoints
OFFICIAL = {"transformer": (1_439_556_160, 554), "denoiser": (1_439_556_160, 554), "vae": (242_662_017, 356),
            "autoencoder": (214_213_635, 231)}


def build(component, size="tiny", seed=0):
    torch.manual_seed(seed)
    return MODELS[component].from_config(config(component, size)).eval()


@pytest.mark.parametrize("component", OFFICIAL)
def test_full_size_matches_official_parameter_count(component):
    with torch.device("meta"):
        model = MODELS[component].from_config(config(component, "full"))
    params = sum(p.numel() for p in model.parameters())
    tensors = len(model.state_dict())
    print(f"{component}: {params:,} parameters, {tensors} tensors")
    assert (params, tensors) == OFFICIAL[component]


def denoiser_inputs(model, b=2, t=3, n=5, s=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg_c = model.proj_in.in_features
    return dict(hidden_states=torch.randn(b, t, n, cfg_c, generator=g),
                context=torch.randn(b, t, s, model.blocks[0].cross_attention.to_k.in_features, generator=g),
                framestep=torch.tensor([[3.0, 4.0, 5.0], [0.0, 2.0, 4.0]])[:b, :t],
                diffusion_time=torch.full((b,), 600.0), mask=torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0]])[:b, :t])


def test_denoiser_capture_is_bit_identical_and_matches_an_explicit_softmax():
    model = build("denoiser")
    args = denoiser_inputs(model)
    b, t, n, _ = args["hidden_states"].shape
    inputs = {}

    def keep_inputs(module, a):
        inputs.setdefault("x", a)

    hook = model.blocks[2].cross_attention.register_forward_pre_hook(keep_inputs)
    with torch.no_grad():
        plain = model(**args)
        with AnchorSelfAttention(model, [0, 3], anchor=1, tokens_per_frame=n, batch_rows=[1]) as sa, \
                ImageCrossAttention(model, [2], frames=t, batch_rows=[1]) as xa:
            captured = model(**args)
            captured_again = model(**args)
    hook.remove()
    assert torch.equal(plain, captured) and torch.equal(plain, captured_again)
    A = sa.result()
    assert A.shape == (t, n, n)
    # rows sum to 1 over all frames minus the (excluded) time-token columns
    total = A.sum(dim=(0, 2))
    assert torch.all(total < 1) and torch.all(total > 0.5), total

    # image cross-attention recomputed by hand from the layer's own weights (heads-first [k|v] packing)
    x, ctx = inputs["x"]
    attn = model.blocks[2].cross_attention
    heads, d = attn.heads, attn.head_dim

    def rms(v, w):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    q = rms((x @ attn.to_q.weight.T).view(b * t, -1, heads, d), attn.norm_q.weight)
    kv = torch.cat([ctx @ attn.to_k.weight.T, ctx @ attn.to_v.weight.T], -1).view(b * t, -1, heads, 2 * d)
    k = rms(kv[..., :d], attn.norm_k.weight)
    p = torch.softmax(torch.einsum("bqhd,bshd->bhqs", q, k) / math.sqrt(d), -1).mean(1)  # (B*T, N+1, S)
    expect = p.view(b, t, n + 1, -1)[1, :, 1:]
    err = (xa.result() - expect).abs().max().item()
    print(f"image cross-attention capture vs explicit: max|d|={err:.3g}")
    assert err < 1e-6


def test_decoder_capture_is_bit_identical_and_row_stochastic():
    vae = build("vae")
    g = torch.Generator().manual_seed(2)
    lat, pts = torch.randn(1, 16, 8, generator=g), torch.rand(1, 300, 3, generator=g) * 2 - 1
    with torch.no_grad():
        plain = vae.decode(lat, pts, chunk=100)  # capture is compared at the same query chunking
        with DecoderCrossAttention(vae, query_chunk=32) as cap:
            captured = vae.decode(lat, pts, chunk=100)
    assert torch.equal(plain, captured)
    probs = cap.result()
    assert probs.shape == (1, 300, 16)
    err = (probs.sum(-1) - 1).abs().max().item()
    print(f"decoder capture row sums: max|1 - sum|={err:.3g}")
    assert err < 1e-5


def test_autoencoder_outputs_positions_in_unit_cube():
    ae = build("autoencoder")
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 9, 6, generator=g)
    out = ae(torch.randn(1, 3, 4, 8, generator=g), torch.tensor([[0.0, 1, 2]]), torch.zeros(1),
             torch.tensor([[0.5, 1.0]]), q)
    assert out.shape == (1, 2, 9, 3) and out.abs().max() < 1


def test_unknown_config_key_means_wrong_checkpoint():
    cfg = config("vae", "tiny") | {"num_experts": 4}
    with pytest.raises(WeightsError, match="num_experts"):
        TripoSGVAE.from_config(cfg)
    with pytest.raises(ValueError):
        config("vae", "huge")


def test_bf16_autocast_keeps_fp32_islands_and_stays_close():
    model = build("transformer")
    g = torch.Generator().manual_seed(4)
    x, ctx = torch.randn(2, 16, 8, generator=g), torch.randn(2, 20, 32, generator=g)
    t = torch.tensor([999.0, 10.0])
    seen = []
    attn = model.blocks[0].self_attention
    with torch.no_grad():
        ref = model(x, t, ctx)
        attn.probes.append(lambda q, k: seen.append((q.dtype, k.dtype)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t, ctx)
        attn.probes.clear()
    rel = ((low.float() - ref).abs().max() / ref.abs().max()).item()
    print(f"bf16 autocast vs fp32: max rel {rel:.3g}")
    assert low.dtype == torch.bfloat16 and rel < 0.05
    assert seen == [(torch.float32, torch.float32)]  # RMS-normed q/k stay fp32 under autocast (reference)


def test_attention_probs_fp32_order_kept_and_bf16_fused_close():
    """fp32 inputs keep the parity order (scale after the product); bf16 inputs take the fused path
    (scale folded into q, bf16 product, fp32 softmax) and stay within bf16 rounding of fp32."""
    from blender_stchain.engine.models.capture import attention_probs, head_mean_probs

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(4, 50, 32, generator=g), torch.randn(4, 70, 32, generator=g)
    ref = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * 32**-0.5, dim=-1)
    assert torch.equal(attention_probs(q, k), ref)
    fused = attention_probs(q.bfloat16(), k.bfloat16())
    assert fused.dtype == torch.float32
    assert torch.allclose(fused.sum(-1), torch.ones(4, 50), atol=1e-5)
    err = (fused - ref).abs().max().item()
    print(f"bf16 fused attention probabilities vs fp32: max|d|={err:.3g}")
    assert err < 0.02
    mean = head_mean_probs(q.bfloat16(), k.bfloat16())
    assert mean.dtype == torch.float32 and (mean - ref.mean(0)).abs().max() < 0.01
