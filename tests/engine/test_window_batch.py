"""A chain window decodes its frames' candidate surfaces in one batch (engine.chain.window): the same
candidates, positions and confidence as decoding each frame on its own, with far fewer decoder calls,
and progress reports that stay monotone and end where the cost model's items end. Tiny random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blender_stchain.contracts.errors import Cancelled
from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.backbone import load_backbone, query_bucket
from blender_stchain.engine.backbone.facade import FrameDecoder, BatchDecoder
from blender_stchain.engine.chain import window
from blender_stchain.engine.chain.blend import blend, token_to_surface
from blender_stchain.engine.geometry import surface

T, KNOWN = 5, 2
SETTINGS = Settings(chain_steps=2, candidate_resolution=32, candidate_coarse_resolution=8, landmarks=24,
                    capture_layers=(0,))


@pytest.fixture(scope="module")
def backbone(tiny_weights):
    return load_backbone(tiny_weights, allow_random=True)


@pytest.fixture(scope="module")
def inputs(backbone):
    g = torch.Generator().manual_seed(3)
    context = backbone.encode_images(torch.rand(T, 3, backbone.image_px, backbone.image_px, generator=g))
    latent = torch.randn(backbone.num_tokens, backbone.latent_channels, generator=g)
    anchor = surface.extract(backbone.sdf(latent), resolution=32, coarse_resolution=8)
    points = torch.as_tensor(anchor.vertices[:: max(1, len(anchor.vertices) // 24)][:24])
    return context, latent, points


def calls_of(backbone, fn):
    """``fn()`` with its SDF decoder calls counted (one latent's, or a batch's: the calls a GPU launches;
    on a CPU a batch's call is run row by row, see ``BatchDecoder.sdf_many``) and its kv caches."""
    count = {"sdf": 0, "kv": 0}
    originals = {(FrameDecoder, "sdf"): FrameDecoder.sdf, (BatchDecoder, "sdf_many"): BatchDecoder.sdf_many}
    vae = backbone.models["vae"]
    decode_kv = vae.decode_kv

    def counted(original, key):
        def call(*a, **kw):
            count[key] += 1
            return original(*a, **kw)
        return call

    for (cls, name), original in originals.items():
        setattr(cls, name, counted(original, "sdf"))
    vae.decode_kv = counted(decode_kv, "kv")
    try:
        return fn(), count
    finally:
        for (cls, name), original in originals.items():
            setattr(cls, name, original)
        del vae.decode_kv


def per_frame(backbone, run, A_VZ, points, s):
    """Each frame decoded on its own (the path before batching): candidates, positions, confidence."""
    meshes, positions, confidence = [], [], []
    for f in range(T):
        if f == KNOWN:
            continue
        decoder = backbone.decoder(run.x0[f])
        mesh = surface.extract(decoder.sdf, resolution=s.candidate_resolution,
                               coarse_resolution=s.candidate_coarse_resolution, chunk=s.decode_chunk)
        X = torch.as_tensor(mesh.vertices)
        if len(X) == 0:
            meshes.append(mesh), positions.append(points), confidence.append(torch.zeros(len(points)))
            continue
        res = blend(A_VZ, run.token_attention[f], token_to_surface(decoder.attention(X, s.attention_chunk)), X,
                    top_k=s.top_k, tau=s.tau, vertex_chunk=s.vertex_chunk)
        meshes.append(mesh), positions.append(res.positions), confidence.append(res.confidence)
    return meshes, torch.stack(positions), torch.stack(confidence)


def test_batched_window_matches_frame_by_frame(backbone, inputs):
    context, latent, points = inputs
    reports = []
    tracks, batched_calls = calls_of(backbone, lambda: window.track_window(
        backbone, context, KNOWN, latent, points, SETTINGS, progress=lambda d, n: reports.append((d, n))))
    run = backbone.stage1(context, KNOWN, latent, SETTINGS.chain_steps, None, 0, capture_layers=(0,))
    assert torch.equal(run.x0, tracks.latents)  # the same stage-I run (deterministic on CPU)
    A_VZ = backbone.decoder_attention(latent, points)
    (meshes, positions, confidence), single_calls = calls_of(backbone, lambda: per_frame(backbone, run, A_VZ,
                                                                                          points, SETTINGS))
    frames = [f for f in range(T) if f != KNOWN]
    batch = surface.extract_many(backbone.decoders(run.x0[frames]).sdf_many, len(frames), resolution=32,
                                 coarse_resolution=8, pad=query_bucket)
    for mesh, one in zip(batch, meshes):
        assert len(one.faces) > 100
        np.testing.assert_array_equal(mesh.faces, one.faces)
        np.testing.assert_allclose(mesh.vertices, one.vertices, atol=1e-5, rtol=0)
        print(f"candidates: {len(one.vertices)} vertices, max difference {np.abs(mesh.vertices - one.vertices).max():.2g}")
    print(f"positions max difference {(tracks.positions[frames] - positions).abs().max():.2g}, confidence "
          f"{(tracks.confidence[frames] - confidence).abs().max():.2g}")
    torch.testing.assert_close(tracks.positions[frames], positions, atol=1e-5, rtol=0)
    torch.testing.assert_close(tracks.confidence[frames], confidence, atol=1e-5, rtol=0)
    assert torch.equal(tracks.positions[KNOWN], points) and bool((tracks.confidence[KNOWN] == 1).all())
    print(f"per window: SDF decoder calls {single_calls['sdf']} frame by frame, {batched_calls['sdf']} batched; "
          f"kv caches {single_calls['kv']} vs {batched_calls['kv'] - 1} (+1 for the known frame)")
    assert batched_calls["sdf"] < single_calls["sdf"] / 2 and batched_calls["kv"] == 2
    done = [d for d, _ in reports]
    assert done == sorted(set(done)) and reports[-1] == (SETTINGS.chain_steps + T,) * 2
    assert len(reports) > SETTINGS.chain_steps + T - 1  # steps, batched calls, frames


def test_cancel_between_batched_decoder_calls(backbone, inputs):
    context, latent, points = inputs
    seen = []

    def progress(done, total):
        seen.append(done)
        if SETTINGS.chain_steps < done:  # the first report after the steps: a batched decoder call
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        window.track_window(backbone, context, KNOWN, latent, points, SETTINGS, progress=progress)
    assert seen[-1] < SETTINGS.chain_steps + 1  # before any frame's item could be whole


def test_a_frame_without_surface_keeps_its_points_with_no_confidence(backbone, inputs):
    """A latent whose SDF is positive everywhere (inside all over: no crossing) among real ones: that
    frame falls back, the others of its batch are unaffected."""
    context, latent, points = inputs
    run = backbone.stage1(context, KNOWN, latent, SETTINGS.chain_steps, None, 0, capture_layers=(0,))
    run.x0[1] = -10.0  # this tiny decoder's field is > 0 everywhere for it (its mesh is empty)
    A_VZ = backbone.decoder_attention(latent, points)
    frames = [0, 1, 3]
    ticks = window._FrameProgress(None, SETTINGS.chain_steps, T, len(frames), SETTINGS)
    out = list(window._chain_frames(backbone, A_VZ, run, frames, points, SETTINGS, ticks))
    assert len(surface.extract(backbone.sdf(run.x0[1]), resolution=32, coarse_resolution=8).vertices) == 0
    assert torch.equal(out[1][0], points) and torch.equal(out[1][1], torch.zeros(len(points)))
    _, positions, confidence = per_frame(backbone, run, A_VZ, points, SETTINGS)  # frames 0, 1, 3, 4
    torch.testing.assert_close(torch.stack([out[0][0], out[2][0]]), positions[[0, 2]], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack([out[0][1], out[2][1]]), confidence[[0, 2]], atol=1e-5, rtol=0)


def test_decode_chunk_bounds_every_batched_call(backbone, inputs, monkeypatch):
    """The OOM retry quarters ``decode_chunk`` (to 4096 at least): each batched SDF call, padding
    included, stays within it, and the window's result does not change."""
    context, latent, points = inputs
    shapes, sdf_many = [], BatchDecoder.sdf_many

    def recording(self, surfaces, pts):
        shapes.append(tuple(pts.shape[:2]))
        return sdf_many(self, surfaces, pts)

    monkeypatch.setattr(BatchDecoder, "sdf_many", recording)
    small = window.track_window(backbone, context, KNOWN, latent, points, SETTINGS.updated(decode_chunk=4096))
    print(f"decode_chunk 4096: {len(shapes)} SDF calls, shapes {sorted(set(shapes))}")
    assert all(rows * query_bucket(width) <= 4096 for rows, width in shapes) and max(r for r, _ in shapes) > 1
    monkeypatch.undo()
    default = window.track_window(backbone, context, KNOWN, latent, points, SETTINGS)
    torch.testing.assert_close(small.positions, default.positions, atol=1e-5, rtol=0)


def test_one_call_path_answers_as_the_row_by_row_one(backbone, inputs):
    """An accelerator queries a batch in one call (gathered kv rows); a CPU row by row: same values."""
    latents = torch.randn(3, backbone.num_tokens, backbone.latent_channels, generator=torch.Generator().manual_seed(5))
    decoders = backbone.decoders(latents)
    surfaces = torch.tensor([2, 0, 2, 1])
    points = torch.rand(4, 5000, 3, generator=torch.Generator().manual_seed(6)) * 2 - 1
    rows = decoders.sdf_many(surfaces, points)
    torch.testing.assert_close(decoders._query(decoders.kv[surfaces], points), rows, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rows[1], backbone.sdf(latents[0])(points[1]), atol=1e-5, rtol=1e-5)
