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
    assert list(chain.plan) == list(am.plan) == ["load", "anchor", "windows", "camera", "write"]
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
