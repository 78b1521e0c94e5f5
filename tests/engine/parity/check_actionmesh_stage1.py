"""Stage-I ActionMesh sampling over AR windows with the real denoiser.

Exact: schedule, AR windows, masks, noise draws; known frames bit-identical to their clamped latents;
everything else within the sampling tolerance.
"""

import json

import torch

from blender_stchain.engine.backbone import sampling
from tests.engine import reference_stage1
from blender_stchain.engine.weights import load_component
from tests.engine.parity import assert_exact, assert_rel

TOL = 5e-5


def check(case):
    info, sched = case.info, case.info["scheduler"]
    steps, shift = sched["num_inference_steps"], sched["shift"]
    timesteps, distances = sampling.actionmesh_schedule(steps, shift, sched["num_train_timesteps"])
    assert_exact(timesteps, case.tensors["schedule_timesteps"], "schedule_timesteps")
    assert_exact(distances, case.tensors["schedule_distances"], "schedule_distances")
    table = json.loads((case.dir / "schedules.json").read_text())
    for key, ref in table.items():
        t, d = sampling.actionmesh_schedule(int(key.removeprefix("steps")), shift)
        assert_exact(t, torch.tensor(ref["timesteps"]), f"schedules.json {key}")
        assert_exact(d, torch.tensor(ref["distances"]), f"schedules.json {key} distances")
    assert info["guidance"]["guidance_at_inference"] == [[0, 1], [1, 1]]

    model = load_component(case.dir / info["denoiser_checkpoint"], "denoiser")
    res = reference_stage1.sample_stage1(
        model, case.t("context"), case.t("frame_timesteps"), case.t("anchor_latent"), info["anchor_idx"], steps,
        info["temporal_context_size"], info["sliding_window"], seed=info["seed"],
        guidance=info["guidance"]["guidance_scales"][0], shift=shift, trace=True)
    assert res.windows == [w["frame_indices"] for w in info["windows"]]
    for w, wr in zip(info["windows"], res.window_results):
        p = f"w{w['window']}_"
        n_frames = len(w["frame_indices"])
        assert_exact(torch.tensor(w["frame_indices"]), case.tensors[p + "window_frame_indices"], p + "indices")
        n, c = wr.latents.shape[1:]
        assert_exact(sampling.window_noise(n_frames, n, c, w["seed"])[None], case.tensors[p + "noise"], p + "noise")
        tr = wr.trace
        assert_exact(torch.stack(tr.model_t), case.tensors[p + "model_diffusion_time_per_step"], p + "model t")
        assert_rel(torch.stack(tr.model_out), case.tensors[p + "model_outputs_per_step"], TOL, p + "model outputs")
        assert_rel(torch.stack(tr.velocity), case.tensors[p + "guided_velocity_per_step"], TOL, p + "velocity")
        assert_rel(torch.stack(tr.latents), case.tensors[p + "latents_per_step"], TOL, p + "latents per step")
        assert_rel(wr.latents[None], case.tensors[p + "final_latents"], TOL, p + "final_latents")
        known = torch.tensor(w["mask"]) == 1
        assert_exact(known.float()[None], case.tensors[p + "mask"], p + "mask")
        # known frames: the bank's latents (the anchor, or earlier windows' results), never touched
        clamped = res.latents[torch.tensor(w["frame_indices"])[known]]
        assert_rel(clamped, case.tensors[p + "init_latent"][0][known], TOL, p + "known frames vs reference")
        for step_latents in [wr.latents[None]] + tr.latents:
            assert_exact(step_latents[0][known], clamped, p + "known frames bit-identical")
    assert_rel(res.latents, case.tensors["bank_latents_ordered"], TOL, "bank_latents_ordered")
    assert_exact(res.latents[info["anchor_idx"]], case.tensors["anchor_latent"][0], "anchor latent kept exactly")
