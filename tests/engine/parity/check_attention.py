"""Captured attention probabilities: raw per-head rows (exact check) and the chain's reduced maps."""

from contextlib import ExitStack

import torch

from blender_stchain.engine.models.actionmesh_denoiser import ActionMeshDenoiser
from blender_stchain.engine.models.capture import (
    AnchorSelfAttention,
    DecoderCrossAttention,
    RawProbs,
)
from blender_stchain.engine.models.triposg_vae import TripoSGVAE
from tests.engine.parity import assert_abs, load_case
from tests.engine.parity._load import load_model

TOL = 1e-6
DENOISER_INPUTS = ("hidden_states", "context", "framestep", "diffusion_time", "mask")


def check_vae(case):
    vae_case = load_case("triposg_vae", case.root)
    vae = load_model(TripoSGVAE, vae_case.dir / vae_case.info["checkpoint_dir"])
    lat, pts = case.t("in_vae_dec_latents"), case.t("in_vae_dec_query_points")
    with torch.no_grad():
        plain = vae.decode(lat, pts, chunk=200)  # the same chunking: capture must not change a single bit
        with RawProbs(vae.decoder.blocks[-1].cross_attention) as raw, DecoderCrossAttention(vae, query_chunk=64) as dec:
            captured = vae.decode(lat, pts, chunk=200)
        surface, idx = case.t("in_vae_enc_surface"), case.t("in_vae_enc_sample_indices")
        with RawProbs(vae.encoder.blocks[0].cross_attention) as enc:
            vae.encode(surface, idx)
    assert torch.equal(plain, captured), "decoder capture changed the logits"
    ref = case.tensors
    assert_abs(torch.cat(raw.calls, dim=2), ref["vae_dec_xattn_probs"], TOL, "vae_dec_xattn_probs")
    assert_abs(dec.result(), ref["vae_dec_xattn_probs_headmean"], TOL, "vae_dec_xattn_probs_headmean (chunked)")
    assert_abs(enc.calls[0], ref["vae_enc_xattn_probs"], TOL, "vae_enc_xattn_probs")
    assert_abs(enc.calls[0].mean(1), ref["vae_enc_xattn_probs_headmean"], TOL, "vae_enc_xattn_probs_headmean")


def check_denoiser(case):
    den_case = load_case("actionmesh_denoiser", case.root)
    model = load_model(ActionMeshDenoiser, den_case.dir / den_case.info["checkpoint_dir"])
    args = {k: case.t("in_denoiser_" + k) for k in DENOISER_INPUTS}
    layers, anchor = case.info["denoiser_layers"], case.info["anchor_frame"]
    _, t, n, _ = args["hidden_states"].shape
    rows = slice(anchor * (n + 1), (anchor + 1) * (n + 1))
    with torch.no_grad():
        plain = model(**args)
        raws = {l: RawProbs(model.blocks[l].self_attention, rows) for l in layers}
        full = RawProbs(model.blocks[layers[0]].self_attention)
        with ExitStack() as stack:
            for r in (*raws.values(), full):
                stack.enter_context(r)
            chain = stack.enter_context(AnchorSelfAttention(model, layers, anchor, n))
            captured = model(**args)
    assert torch.equal(plain, captured), "self-attention capture changed the denoiser output"
    ref = case.tensors
    for l in layers:
        assert_abs(raws[l].calls[0], ref[f"denoiser_sattn_l{l}_anchor_rows"], TOL, f"denoiser_sattn_l{l}_anchor_rows")
    assert_abs(full.calls[0], ref[f"denoiser_sattn_l{layers[0]}_full"], TOL, f"denoiser_sattn_l{layers[0]}_full")
    # the chain's reduced map, built here from the fixture's own per-head rows
    stacked = torch.stack([case.t(f"denoiser_sattn_l{l}_anchor_rows") for l in layers])  # (L, B, H, N+1, T(N+1))
    expect = stacked[..., 1:, :].unflatten(-1, (t, n + 1))[..., 1:].mean(dim=(0, 1, 2)).transpose(0, 1)
    assert_abs(chain.result(), expect, TOL, "anchor map (T, N, N) mean over layers, batch, heads")


def check(case):
    check_vae(case)
    check_denoiser(case)
