"""The pipeline's time estimate (engine.estimate): its work counts against independent counters, and
a real tiny-weights run of each method for the ETA's structure (timing accuracy is bench/eta.py's)."""

import math

import pytest

from bench.flops import flops as counted  # torch's own FLOP counter on meta tensors
from bench.flops import meta
from blender_stchain.contracts.result import load_result
from blender_stchain.engine.estimate import CONTEXT_TOKENS, _band, step_flops, surface_queries
from blender_stchain.engine.geometry import surface
from blender_stchain.engine.pipeline import run
from blender_stchain.engine.weights.loading import build
from blender_stchain.engine.weights.random_checkpoints import component_config
from tests.conftest import DATA
from tests.helpers import quick_job


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_step_flops_match_torchs_count(size):
    dit = build("transformer", component_config("transformer", size), "meta")
    den = build("denoiser", component_config("denoiser", size), "meta")
    n, c, d = component_config("denoiser", size)["num_tokens_nominal"], dit.dims.in_channels, dit.dims.cross_dim
    ctx = CONTEXT_TOKENS
    assert step_flops(dit.dims, n, batch=2) == pytest.approx(counted(lambda: dit(meta(2, n, c), meta(2),
                                                                                 meta(2, ctx, d))), rel=0.01)
    for frames, batch in ((16, 1), (5, 2)):
        torch_count = counted(lambda: den(meta(batch, frames, n, c), meta(batch, frames, ctx, d),
                                          meta(batch, frames), meta(batch), meta(batch, frames)))
        assert step_flops(den.dims, n, frames, batch, den.inflated) == pytest.approx(torch_count, rel=0.01)


def test_surface_queries_follow_the_samplers_count():
    """The band measured at one grid setting predicts the sampler's own count at others (a sphere)."""
    def sampled(res, coarse, radius):
        return surface.sample_surface_cells(lambda p: radius - p.norm(dim=-1), resolution=res,
                                            coarse_resolution=coarse)[2]

    for radius in (0.6, 0.3):
        band = _band(sampled(48, 16, radius), 48, 16)
        for res, coarse in ((64, 16), (128, 32)):
            assert surface_queries(res, coarse, band) == pytest.approx(sampled(res, coarse, radius), rel=0.1)


@pytest.mark.parametrize("method", ["chain", "actionmesh"])
def test_eta_is_there_from_the_anchor_on_and_ends_at_zero(tiny_weights, tmp_path, method):
    events = []
    job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / "r.safetensors", tiny_weights, method=method)
    r = load_result(run(job, on_event=events.append))
    progress = [e for e in events if e["event"] == "progress"]
    assert all(e["eta_s"] is None for e in progress if e["stage"] == "load")  # nothing measured yet
    timed = [i for i, e in enumerate(progress) if e["eta_s"] is not None]
    assert progress[timed[0]]["stage"] == "anchor"  # the first ETA: the anchor's second step
    assert timed == list(range(timed[0], len(progress)))  # from then on on every line
    assert all(math.isfinite(progress[i]["eta_s"]) and progress[i]["eta_s"] >= 0 for i in timed)
    assert progress[-1]["eta_s"] == 0.0 and progress[-1]["fraction"] == 1.0
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions)
    windows = [e for e in progress if e["stage"] == "windows"]
    assert windows[-1]["done"] == windows[-1]["total"]  # the estimate's items are the method's reports
    estimate = r.metadata["time_estimate"]
    per_window = "frame" if method == "chain" else "stage2"
    assert {"dit", "denoiser", "anchor_surface", per_window} <= set(estimate["measured"])
    assert estimate["calibration_s"] < 0.2 * sum(r.metadata["seconds"].values())
