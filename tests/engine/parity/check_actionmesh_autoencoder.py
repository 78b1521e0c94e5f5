"""ActionMesh stage-II autoencoder: every recorded window call, plus window-0 intermediates."""

import torch

from blender_stchain.engine.models.actionmesh_autoencoder import ActionMeshAutoencoder
from tests.engine.parity import assert_abs, assert_rel
from tests.engine.parity._load import load_model

INPUTS = ("latent", "framestep", "source_alpha", "target_alphas", "query")


def check(case):
    ae = load_model(ActionMeshAutoencoder, case.dir / case.info["checkpoint_dir"])
    ref = case.tensors
    for w in case.info["windows"]:
        p = f"w{w['window']}_"
        args = {k: case.t(p + k) for k in INPUTS}
        with torch.no_grad():
            raw = ae.logits(**args)
            out = ae(**args)
        assert_rel(raw, ref[p + "raw_logits"], 1e-5, p + "raw_logits")
        assert_abs(out, ref[p + "output"], 1e-5, p + "output")
        assert_abs(out.clamp(-1, 1), ref[p + "vertices_clamped"], 1e-5, p + "vertices_clamped")
    args = {k: case.t("w0_" + k) for k in INPUTS}
    n = args["latent"].shape[2]
    with torch.no_grad():
        assert_rel(ae.embed_query(args["query"]), ref["w0_query_embed"], 1e-5, "w0_query_embed")
        cos, sin = ae.rope(args["framestep"], n)
        assert_rel(cos, ref["w0_rope_cos"], 1e-5, "w0_rope_cos")
        assert_rel(sin, ref["w0_rope_sin"], 1e-5, "w0_rope_sin")
        alphas = ae.alpha_tokens(args["source_alpha"], args["target_alphas"])
        t = args["latent"].shape[1]
        assert_rel(alphas[:, :, None].expand(-1, -1, t, -1), ref["w0_alpha_tokens"], 1e-5, "w0_alpha_tokens")
        b = args["latent"].shape[0]
        tokens = ae.post_quant(args["latent"]).reshape(b, t * n, -1)
        kv = ae.kv_cache(tokens, alphas[:, 0], (cos, sin))
    assert_rel(kv, ref["w0_kv_cache_target0"], 1e-5, "w0_kv_cache_target0")
