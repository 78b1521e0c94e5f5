"""TripoSG DiT: one forward, plus time embedding and every block output (and the second context when the
config has ``use_cross_attention_2``)."""

import torch

from blender_stchain.engine.models.layers import time_sinusoid
from blender_stchain.engine.models.triposg_dit import TripoSGDiT
from tests.engine.parity import assert_abs, assert_rel
from tests.engine.parity._load import load_model


def block_outputs(model, run):
    """Run ``run()`` while recording each block's output (forward hooks)."""
    outs = []
    hooks = [b.register_forward_hook(lambda m, a, kw, o: outs.append(o), with_kwargs=True) for b in model.blocks]
    try:
        result = run()
    finally:
        for h in hooks:
            h.remove()
    return result, outs


def check(case):
    model = load_model(TripoSGDiT, case.dir / case.info["checkpoint_dir"])
    t = case.t("timestep")
    with torch.no_grad():
        assert_abs(time_sinusoid(t, model.width), case.tensors["time_sinusoid"], 1e-4, "time_sinusoid")
        assert_rel(model.time_token(t, torch.float32)[:, 0], case.tensors["time_token"], 1e-5, "time_token")
        ctx2 = case.t("encoder_hidden_states_2") if "encoder_hidden_states_2" in case.tensors else None
        sample, outs = block_outputs(model, lambda: model(case.t("hidden_states"), t,
                                                          case.t("encoder_hidden_states"), ctx2))
    for i, o in enumerate(outs):
        assert_rel(o, case.tensors[f"block_out_{i}"], 1e-5, f"block_out_{i}")
    assert_rel(sample, case.tensors["sample"], 1e-5, "sample")
