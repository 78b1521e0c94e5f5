"""Sampler loops against the reference fixtures, driven by the recorded model outputs.

The recorded reference velocities stand in for the network (which has its own parity case), so these tests
isolate the loop arithmetic: schedules, CFG batch layout, update rule, masking, noise order, AR windows,
progress, cancel and the step hook. The end-to-end loops with the real models are in tests/engine/parity.
"""

import contextlib
import json

import pytest
import torch

from blender_stchain.contracts.errors import Cancelled
from blender_stchain.engine.backbone import sampling
from tests.engine import reference_stage1
from tests.engine.parity import assert_exact, assert_rel, fixture_sets, load_case, manifest

NAMES = {c["name"] for c in manifest()["cases"]}


class Replay(torch.nn.Module):
    """Returns the reference's recorded outputs in call order and checks each call's timestep input."""

    def __init__(self, outputs, times):
        super().__init__()
        self.outputs, self.times, self.calls = outputs, times, 0

    def forward(self, *args, **kw):
        t = kw.get("diffusion_time", args[1] if len(args) > 1 else None)
        assert torch.equal(t, self.times[self.calls]), (t, self.times[self.calls])
        out = self.outputs[self.calls]
        self.calls += 1
        return out.clone()


@pytest.mark.skipif("triposg_sampling" not in NAMES, reason="fixture set has no triposg_sampling case")
def test_stage0_loop_replays_reference():
    case = load_case("triposg_sampling")
    steps = case.info["num_inference_steps"]
    model = Replay(case.t("model_outputs"), case.t("model_timestep_inputs"))
    seen, hooked = [], []

    @contextlib.contextmanager
    def hook(window, step):
        hooked.append((window, step))
        yield

    n, c = case.info["tensors"]["init_noise"]["shape"][1:]
    assert_exact(sampling.stage0_noise(n, c, case.info["generator_seed"]), case.tensors["init_noise"], "noise")
    res = sampling.sample_stage0(model, case.t("cond_image_embeds"), case.t("init_noise"), steps,
                                 case.info["guidance_scale"], on_step=lambda i, n: seen.append((i, n)),
                                 step_hook=hook, trace=True)
    assert seen == [(i + 1, steps) for i in range(steps)] and hooked == [(0, i) for i in range(steps)]
    assert_rel(torch.stack(res.trace.velocity), case.tensors["guided_velocities"], 1e-6, "stage0 replay velocity")
    assert_rel(torch.stack(res.trace.latents), case.tensors["latents_per_step"], 1e-6, "stage0 replay latents")
    assert_rel(res.latents, case.tensors["final_latents"], 1e-6, "stage0 replay final")


@pytest.mark.skipif("actionmesh_stage1" not in NAMES, reason="fixture set has no actionmesh_stage1 case")
def test_stage1_loop_replays_reference():
    case = load_case("actionmesh_stage1")
    info = case.info
    windows = [w["frame_indices"] for w in info["windows"]]
    outputs = [o for k in range(len(windows)) for o in case.t(f"w{k}_model_outputs_per_step")]
    times = [t for k in range(len(windows)) for t in case.t(f"w{k}_model_diffusion_time_per_step")]
    model = Replay(outputs, times)
    steps = info["scheduler"]["num_inference_steps"]
    res = reference_stage1.sample_stage1(model, case.t("context"), case.t("frame_timesteps"), case.t("anchor_latent"),
                                 info["anchor_idx"], steps, info["temporal_context_size"], info["sliding_window"],
                                 seed=info["seed"], guidance=info["guidance"]["guidance_scales"][0], trace=True)
    assert res.windows == windows
    for k, wr in enumerate(res.window_results):
        assert_rel(wr.latents[None], case.tensors[f"w{k}_final_latents"], 1e-6, f"w{k} replay final")
        known = case.tensors[f"w{k}_mask"][0] == 1
        assert_exact(wr.latents[known], case.tensors[f"w{k}_init_latent"][0][known], f"w{k} known frames")
    assert_rel(res.latents, case.tensors["bank_latents_ordered"], 1e-6, "stage1 replay bank")


def test_window_noise_matches_reference_draw_order():
    case = load_case("actionmesh_stage1")
    n, c = case.info["latent_shape"]
    for w in case.info["windows"]:
        k = w["window"]
        got = sampling.window_noise(len(w["frame_indices"]), n, c, w["seed"])
        assert_exact(got[None], case.tensors[f"w{k}_noise"], f"w{k} noise")


def test_cancel_between_steps_and_truncated_schedule():
    calls = []

    def model(x, t, cond):
        calls.append(float(t[0]))
        return torch.ones_like(x)

    with pytest.raises(Cancelled):
        sampling.sample_stage0(model, torch.zeros(1, 3, 4), torch.zeros(1, 5, 2), 10, 2.0,
                               cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3
    # K-step truncated stage-I schedule = the full-range schedule with S = K
    t, d = sampling.actionmesh_schedule(4)
    assert float(t[0]) == 1000.0 and abs(float(t[-1]) - 8.928571701049805) < 1e-6 and len(d) == 4


def test_schedules_exact_against_fixture_tables():
    case = load_case("actionmesh_stage1")
    table = json.loads((case.dir / "schedules.json").read_text())
    for key, ref in table.items():
        t, d = sampling.actionmesh_schedule(int(key.removeprefix("steps")))
        assert_exact(t, torch.tensor(ref["timesteps"]), f"{key} timesteps")
        assert_exact(d, torch.tensor(ref["distances"]), f"{key} distances")
    s0 = load_case("triposg_sampling")
    t, s = sampling.triposg_schedule(s0.info["num_inference_steps"])
    assert_exact(t, torch.tensor(s0.info["timesteps"]), "stage0 timesteps")
    assert_exact(s, torch.tensor(s0.info["sigmas"]), "stage0 sigmas")


@pytest.mark.parametrize("root", fixture_sets(), ids=lambda p: p.name)
def test_ar_windows_match_reference_table(root):
    case = load_case("actionmesh_stage1", root)
    table = json.loads((case.dir / "ar_windows.json").read_text())
    count = 0
    for group, cases in table.items():
        if not isinstance(cases, dict):
            continue
        size, slide = (int(x) for x in group.split("_")[-2:])
        for key, ref in cases.items():
            total, anchor = (int(x) for x in key.removeprefix("total").split("_anchor"))
            assert reference_stage1.ar_windows(anchor, total, size, slide) == ref, key
            count += 1
    print(f"ar windows: {count} reference cases equal")
    assert count > 0


def test_stage1_on_an_exact_flow_recovers_the_clean_latents():
    """With the true velocity of a straight path x_s = (1-s) z + s eps (v = z - eps), the predicted clean
    latents equal z, the final latents sit at the schedule's last sigma, and the known frame is untouched."""
    torch.manual_seed(0)
    frames, n, c = 5, 6, 3
    z = torch.randn(frames, n, c)
    calls = []

    def oracle(hidden_states, context, framestep, diffusion_time, mask):
        sigma = (diffusion_time / 1000.0)[:, None, None, None]
        target = z[framestep[0].long()]  # the window's frames, in window order
        eps = (hidden_states - (1 - sigma) * target) / sigma
        calls.append((hidden_states.shape[0], tuple(mask[0].tolist())))
        return target - eps

    anchor = z[2] + 0.5  # a clamped latent the flow would not produce: it must stay bit-identical
    res = reference_stage1.sample_stage1(oracle, torch.randn(frames, 4, 2), torch.arange(frames).float(), anchor,
                                 anchor=2, steps=4, window_size=frames, slide=frames - 1, guidance=None)
    (window,) = res.window_results
    assert res.windows == [[2, 0, 1, 3, 4]] and calls[0] == (1, (1.0, 0.0, 0.0, 0.0, 0.0))
    idx = [0, 1, 3, 4]
    err = float((res.latents[idx] - z[idx]).abs().max())
    x0_err = float((window.x0[1:] - z[idx]).abs().max())
    t_end = float(sampling.actionmesh_schedule(4)[0][-1]) / 1000
    print(f"exact flow: x0 error {x0_err:.2e}, final offset {err:.3f} at sigma_end {t_end:.4f}")
    assert x0_err < 1e-5 and 0 < err < 10 * t_end
    assert torch.equal(res.latents[2], anchor) and torch.equal(window.x0[0], anchor)
