"""Attention capture never changes what a layer computes, for any head count, head dim and dtype.

The layer output always comes from the one SDPA call it makes without capture; probes run after it and
only read q and k. Head dims here are not multiples of 8 (12, 20, 36), where SDPA kernels choose other
blockings, and the dtypes are fp32, bf16 and fp16 (all run on CPU with torch 2.13): layers with weights
in that dtype, and whole models the way the product runs them (fp32 weights under autocast).
"""

import pytest
import torch

from blender_stchain.engine.models.capture import (AnchorSelfAttention, DecoderCrossAttention,
                                                    ImageCrossAttention, RawProbs, attention_probs)
from blender_stchain.engine.models.configs import config
from blender_stchain.engine.models.layers import Attention, rope_tables
from blender_stchain.engine.models.registry import build_model

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
PV_TOL = {torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 2e-3}  # probs @ v vs the layer's SDPA
HEADS_DIMS = [(1, 12), (3, 12), (2, 20), (5, 20), (1, 36), (3, 36)]


def attention_case(kind, heads, head_dim, dtype, seed=0):
    torch.manual_seed(seed)
    dim = heads * head_dim
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "self":  # the denoiser's: q/k RMS norm and RoPE
        attn = Attention(dim, heads, qk_norm=True)
        x = torch.randn(2, 37, dim, generator=g)
        cos, sin = rope_tables(torch.arange(37.0)[None].expand(2, -1) % 5, head_dim)
        kwargs = {"rope": (cos.to(dtype), sin.to(dtype))}
    else:  # the VAE decoder's: LayerNorm on the key/value input, no q/k norm
        attn = Attention(dim, heads, 24, cross=True, norm_cross=True)
        x = torch.randn(2, 41, dim, generator=g)
        kwargs = {"context": torch.randn(2, 19, 24, generator=g).to(dtype)}
    for p in attn.parameters():  # non-trivial norm weights, so a wrong norm cannot hide
        if p.dim() == 1:
            torch.nn.init.uniform_(p, 0.5, 1.5, generator=g)
    return attn.to(dtype).eval(), x.to(dtype), kwargs


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("heads,head_dim", HEADS_DIMS)
@pytest.mark.parametrize("kind", ["self", "cross"])
def test_capture_leaves_the_output_bit_identical(kind, heads, head_dim, dtype):
    attn, x, kw = attention_case(kind, heads, head_dim, dtype)
    with torch.no_grad():
        plain = attn(x, **kw)
        with RawProbs(attn) as raw, RawProbs(attn, slice(3, 9)) as rows:
            captured = attn(x, **kw)
        q, k, v = attn.qkv(x, kw.get("context"), kw.get("rope"))
    assert captured.dtype == dtype and torch.equal(plain, captured)
    probs = raw.calls[0]
    assert probs.dtype == torch.float32 and probs.shape == (2, heads, x.shape[1], k.shape[2])
    assert torch.equal(rows.calls[0], probs[:, :, 3:9])
    # the probabilities are those of this layer: probs @ v reproduces its SDPA result
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v).float()
    err = (probs @ v.float() - sdpa).abs().max().item()
    assert err <= PV_TOL[dtype], err
    assert (probs.sum(-1) - 1).abs().max().item() < 1e-5


def test_a_probe_that_writes_into_q_and_k_cannot_change_the_output():
    """Probes run after the output exists, so even a misbehaving one leaves it alone."""
    attn, x, kw = attention_case("self", 3, 20, torch.float32)
    with torch.no_grad():
        plain = attn(x, **kw)
        attn.probes.append(lambda q, k: (q.zero_(), k.zero_()))
        try:
            vandalised = attn(x, **kw)
        finally:
            attn.probes.clear()
    assert torch.equal(plain, vandalised)


def test_head_mean_chunks_are_bit_identical_to_one_block():
    """The chain's head-averaged maps do not depend on how many heads a probe block holds."""
    from blender_stchain.engine.models import capture

    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(6, 10, 12, generator=g), torch.randn(6, 14, 12, generator=g)
    whole = capture.head_mean_probs(q, k)
    limit = capture.MAX_CHUNK_ELEMENTS
    try:
        capture.MAX_CHUNK_ELEMENTS = 10 * 14  # one head per block
        chunked = capture.head_mean_probs(q, k)
    finally:
        capture.MAX_CHUNK_ELEMENTS = limit
    assert torch.allclose(whole, chunked, atol=1e-7)
    assert torch.allclose(whole, attention_probs(q, k).mean(0), atol=1e-7)


def small_model(component, seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(component, {**config(component, "tiny"), **overrides}).eval()


def precision(dtype):
    """How the product runs a model at ``dtype``: fp32 weights under autocast (engine/device.py)."""
    return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_decoder_capture_is_bit_identical_with_head_dim_12(dtype):
    vae = small_model("vae", num_attention_heads=3, width_encoder=36, width_decoder=36)
    g = torch.Generator().manual_seed(2)
    lat, pts = torch.randn(1, 16, 8, generator=g), torch.rand(1, 150, 3, generator=g) * 2 - 1
    with torch.no_grad(), precision(dtype):
        plain = vae.decode(lat, pts, chunk=64)
        with DecoderCrossAttention(vae, query_chunk=32) as cap:
            captured = vae.decode(lat, pts, chunk=64)
    assert plain.dtype == dtype and torch.equal(plain, captured)
    assert cap.result().shape == (1, 150, 16)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_denoiser_capture_is_bit_identical_with_head_dim_20(dtype):
    model = small_model("denoiser", num_attention_heads=2, width=40, num_layers=3, inflated_layers=[0, 2])
    g = torch.Generator().manual_seed(3)
    b, t, n = 2, 3, 6
    args = dict(hidden_states=torch.randn(b, t, n, 8, generator=g), context=torch.randn(b, t, 9, 32, generator=g),
                framestep=torch.tensor([[0.0, 1, 2], [3, 5, 7]]), diffusion_time=torch.full((b,), 700.0),
                mask=torch.tensor([[1.0, 0, 0], [1, 1, 0]]))
    with torch.no_grad(), precision(dtype):
        plain = model(**args)
        with AnchorSelfAttention(model, [0, 2], anchor=0, tokens_per_frame=n) as sa, \
                ImageCrossAttention(model, [1], frames=t) as xa:
            captured = model(**args)
    assert plain.dtype == dtype and torch.equal(plain, captured)
    assert sa.result().shape == (t, n, n) and xa.result().shape == (t, n, 9)
