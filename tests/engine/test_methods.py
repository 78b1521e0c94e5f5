"""The method records: one per job method name, each with what differs between the methods."""

import torch

from blender_stchain.contracts.job import METHODS as JOB_METHODS
from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.backbone import load_backbone
from blender_stchain.engine.methods import METHODS, method


def test_every_job_method_has_one_record_and_nothing_else():
    assert tuple(METHODS) == JOB_METHODS
    assert [method(name).name for name in JOB_METHODS] == list(JOB_METHODS)


def test_records_hold_what_differs():
    chain, am = method("chain"), method("actionmesh")
    assert "autoencoder" in am.parts and "autoencoder" not in chain.parts
    assert set(chain.parts) < set(am.parts)
    s = Settings()
    assert chain.anchor_steps(s) == s.anchor_steps and am.anchor_steps(s) == s.baseline_anchor_steps
    assert list(chain.plan) == list(am.plan) == ["load", "anchor", "surface", "windows", "camera", "write"]
    assert am.plan["windows"] > chain.plan["windows"]


def test_loaded_models_hold_no_gradient_state_and_stage0_is_released(tiny_weights):
    bb = load_backbone(tiny_weights, parts=method("actionmesh").parts, allow_random=True)
    assert set(bb.models) == set(method("actionmesh").parts)
    assert not any(p.requires_grad for m in bb.models.values() for p in m.parameters())
    bb.release()
    assert "transformer" not in bb.models and "image_encoder_dinov2" not in bb.models
    latents = torch.randn(3, bb.num_tokens, bb.latent_channels)
    verts = torch.rand(20, 3) - 0.5
    faces = torch.randint(0, 20, (30, 3))
    out = bb.stage2(latents, 1, verts, faces)  # the autoencoder through the facade
    assert out.shape == (3, 20, 3) and torch.equal(out[1], verts) and torch.isfinite(out).all()
    assert bb.clock.seconds > 0


def test_bf16_run_stores_autocast_parts_in_bf16_and_gives_a_finite_result(tiny_weights, tmp_path):
    """Weights in the compute precision (GPU memory): the whole pipeline still runs, here on CPU bf16."""
    from blender_stchain.contracts.job import JobSpec
    from blender_stchain.contracts.result import load_result
    from blender_stchain.engine.pipeline import run
    from tests.conftest import DATA

    bb = load_backbone(tiny_weights, precision="bf16", allow_random=True)
    den = bb.models["denoiser"]
    assert {p.dtype for m in den.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()} == {
        torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in bb.models["dinov2"].parameters())
    job = JobSpec(footage=str(DATA / "videos/lifting1_fg.mp4"), out=str(tmp_path / "r.safetensors"),
                  weights=str(tiny_weights), frames=(1, 6), precision="bf16", allow_random_weights=True,
                  preset="fast", settings=dict(anchor_steps=3, grid_resolution=48, coarse_resolution=24,
                                               landmarks=64, candidate_resolution=32, face_budget=2000))
    r = load_result(run(job))
    assert r.metadata["precision"] == "bfloat16" and r.vertices.shape[0] == 6
    assert torch.isfinite(torch.as_tensor(r.vertices)).all()
