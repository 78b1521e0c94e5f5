"""ActionMesh denoiser: one forward, plus per-frame times, time tokens, RoPE tables and block outputs."""

import torch

from blender_stchain.engine.models.actionmesh_denoiser import ActionMeshDenoiser
from blender_stchain.engine.models.layers import time_sinusoid
from tests.engine.parity import assert_abs, assert_rel
from tests.engine.parity._load import load_model
from tests.engine.parity.check_triposg_dit import block_outputs

INPUTS = ("hidden_states", "context", "framestep", "diffusion_time", "mask")


def check(case):
    model = load_model(ActionMeshDenoiser, case.dir / case.info["checkpoint_dir"])
    args = {k: case.t(k) for k in INPUTS}
    n = args["hidden_states"].shape[2]
    with torch.no_grad():
        ft = model.frame_times(args["diffusion_time"], args["mask"])
        assert_abs(ft, case.tensors["frame_diffusion_time"], 1e-6, "frame_diffusion_time")
        assert_abs(time_sinusoid(ft, model.width), case.tensors["time_sinusoid"], 1e-4, "time_sinusoid")
        assert_rel(model.time_token(ft, torch.float32)[:, 0], case.tensors["time_token"], 1e-5, "time_token")
        cos, sin = model.rope(args["framestep"], n + 1)
        assert_abs(cos, case.tensors["rope_cos"], 1e-6, "rope_cos")
        assert_abs(sin, case.tensors["rope_sin"], 1e-6, "rope_sin")
        out, blocks = block_outputs(model, lambda: model(**args))
    for i, o in enumerate(blocks):
        assert_rel(o, case.tensors[f"block_out_{i}"], 1e-5, f"block_out_{i}")
    assert_rel(out, case.tensors["output"], 1e-5, "output")
