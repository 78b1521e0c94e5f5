"""TripoSG VAE: decode (query logits) and encode (posterior with the stored indices and eps)."""

import torch

from blender_stchain.engine.models.triposg_vae import TripoSGVAE
from tests.engine.parity import assert_rel
from tests.engine.parity._load import load_model


def check(case):
    vae = load_model(TripoSGVAE, case.dir / case.info["checkpoint_dir"])
    ref = case.tensors
    with torch.no_grad():
        assert_rel(vae.embed(case.t("dec_query_points")), ref["dec_query_embed"], 1e-5, "dec_query_embed")
        assert_rel(vae.post_quant(case.t("dec_latents")), ref["dec_post_quant_out"], 1e-5, "dec_post_quant_out")
        kv = vae.decode_kv(case.t("dec_latents"))
        assert_rel(kv, ref["dec_kv_cache"], 1e-5, "dec_kv_cache")
        assert_rel(vae.decode(case.t("dec_latents"), case.t("dec_query_points")), ref["dec_logits"], 1e-5,
                   "dec_logits")
        # chunked queries give the same logits
        assert_rel(vae.query(kv, case.t("dec_query_points"), chunk=7), ref["dec_logits"], 1e-5, "dec_logits chunked")

        surface, idx = case.t("enc_surface"), case.t("enc_sample_indices")
        post = vae.encode(surface, idx, eps=case.t("enc_eps"))
        feat = torch.cat([vae.embed(surface[..., :3]), surface[..., 3:]], -1)
        assert_rel(feat, ref["enc_kv_embed"], 1e-5, "enc_kv_embed")
        assert_rel(feat[:, idx], ref["enc_q_embed"], 1e-5, "enc_q_embed")
        assert_rel(vae.encoder(feat[:, idx], feat), ref["enc_encoder_out"], 1e-5, "enc_encoder_out")
    for name in ("parameters", "mean", "logvar", "std", "sample"):
        assert_rel(getattr(post, name), ref[f"enc_{name}"], 1e-5, f"enc_{name}")
