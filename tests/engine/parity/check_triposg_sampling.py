"""Stage-0 TripoSG sampling loop with the real DiT: exact schedule, loop within the sampling tolerance."""

import torch

from blender_stchain.engine.backbone import sampling
from blender_stchain.engine.weights import load_component
from tests.engine.parity import assert_exact, assert_rel

TOL = 5e-5  # README: sampling loops, max|got-ref| <= 5e-5 * max(1, max|ref|)


def check(case):
    info = case.info
    steps = info["num_inference_steps"]
    timesteps, sigmas = sampling.triposg_schedule(steps)
    assert_exact(timesteps, torch.tensor(info["timesteps"], dtype=torch.float32), "timesteps")
    assert_exact(sigmas, torch.tensor(info["sigmas"], dtype=torch.float32), "sigmas")
    n, c = info["tensors"]["init_noise"]["shape"][1:]
    assert_exact(sampling.stage0_noise(n, c, info["generator_seed"]), case.tensors["init_noise"], "init_noise")
    assert_exact(case.tensors["uncond_image_embeds"], 0 * case.tensors["cond_image_embeds"], "uncond is zeros")

    model = load_component(case.dir / info["transformer_checkpoint"], "transformer")
    res = sampling.sample_stage0(model, case.t("cond_image_embeds"), case.t("init_noise"), steps,
                                 info["guidance_scale"], trace=True)
    assert_exact(torch.stack(res.trace.model_t), case.tensors["model_timestep_inputs"], "model t inputs")
    assert_rel(torch.stack(res.trace.model_out), case.tensors["model_outputs"], TOL, "model_outputs")
    assert_rel(torch.stack(res.trace.velocity), case.tensors["guided_velocities"], TOL, "guided_velocities")
    assert_rel(torch.stack(res.trace.latents), case.tensors["latents_per_step"], TOL, "latents_per_step")
    assert_rel(res.latents, case.tensors["final_latents"], TOL, "final_latents")
