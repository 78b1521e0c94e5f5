"""The sharp blend (docs/architecture.md 5.5) as a pure function: numbers by hand, chunking, projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blender_stchain.engine.chain import (
    blend,
    blend_scores,
    closest_point_on_triangles,
    project_to_surface,
    token_to_surface,
)
from tests.engine.meshes import uv_sphere


def _stochastic(rows, cols, gen):
    return torch.softmax(4 * torch.randn(rows, cols, generator=gen, dtype=torch.float64), dim=1)


def test_blend_by_hand():
    # row scores [4, 2, 1, 1]: top-2 = [4, 2]; logits (s - 4) / (0.5 * 4) = [0, -1]
    X = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [5.0, 5, 5]])
    r = blend_scores(torch.tensor([[4.0, 2, 1, 1]]), X, top_k=2, tau=0.5, return_indices=True)
    w0 = 1 / (1 + np.exp(-1))
    assert r.positions[0].tolist() == pytest.approx([w0, 1 - w0, 0.0], abs=1e-6)
    assert r.confidence.item() == pytest.approx(6 / 8)
    assert r.indices.tolist() == [[0, 1]]
    # the temperature is relative to the row maximum: scaling a row changes nothing
    r10 = blend_scores(torch.tensor([[40.0, 20, 10, 10]]), X, top_k=2, tau=0.5)
    assert torch.allclose(r10.positions, r.positions) and torch.allclose(r10.confidence, r.confidence)


def test_blend_chunks_match_the_whole_product():
    gen = torch.Generator().manual_seed(0)
    A_VZ, A_af, A_fS = _stochastic(37, 16, gen), _stochastic(16, 16, gen), _stochastic(16, 50, gen)
    X = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    whole = blend_scores(A_VZ @ A_af @ A_fS, X, top_k=4, tau=0.1)
    chunked = blend(A_VZ, A_af, A_fS, X, top_k=4, tau=0.1, vertex_chunk=5)
    assert torch.allclose(whole.positions, chunked.positions, atol=1e-12)
    assert torch.allclose(whole.confidence, chunked.confidence, atol=1e-12)
    assert ((chunked.confidence > 0) & (chunked.confidence <= 1)).all()


def test_token_to_surface_normalises_over_candidates():
    P = torch.rand(30, 8, dtype=torch.float64)
    A = token_to_surface(P)
    assert A.shape == (8, 30)
    assert torch.allclose(A.sum(dim=1), torch.ones(8, dtype=torch.float64))
    assert torch.allclose(A[3, 7] / A[3, 2], P[7, 3] / P[2, 3])


def test_blend_rejects_maps_that_do_not_compose():
    with pytest.raises(ValueError, match="do not compose"):
        blend(torch.rand(5, 4), torch.rand(4, 4), torch.rand(3, 10), torch.rand(10, 3))


def test_closest_point_on_triangle_against_dense_sampling():
    gen = np.random.default_rng(1)
    tri = gen.normal(size=(200, 3, 3))
    p = 2 * gen.normal(size=(200, 3))
    got = closest_point_on_triangles(torch.tensor(p), torch.tensor(tri)).numpy()
    u, v = np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 1, 201))
    keep = u + v <= 1
    u, v = u[keep], v[keep]
    dense = (
        tri[:, None, 0]
        + u[None, :, None] * (tri[:, None, 1] - tri[:, None, 0])
        + v[None, :, None] * (tri[:, None, 2] - tri[:, None, 0])
    )
    brute = np.linalg.norm(dense - p[:, None], axis=2).min(axis=1)
    mine = np.linalg.norm(got - p, axis=1)
    assert (mine <= brute + 1e-9).all()  # never worse than any sampled point of the triangle
    assert np.abs(mine - brute).max() < 0.02  # and within the sampling resolution of the best


def test_projection_puts_blended_points_on_the_surface():
    V, F = uv_sphere(24, 48)
    Vt = torch.tensor(V)
    gen = torch.Generator().manual_seed(2)
    scores = torch.rand(100, V.shape[0], generator=gen, dtype=torch.float64) ** 16
    loose = blend_scores(scores, Vt, top_k=8, tau=1.0)
    tight = blend_scores(scores, Vt, top_k=8, tau=1.0, surface_faces=torch.tensor(F))
    # distance to the polygonal sphere: projected points are on it (up to the chordal sag)
    sag = 1 - np.cos(np.pi / 24)
    r_loose = loose.positions.norm(dim=1).numpy()
    r_tight = tight.positions.norm(dim=1).numpy()
    print(
        f"\n[blend projection] radius off by: loose {np.abs(1 - r_loose).max():.3f}, projected "
        f"{np.abs(1 - r_tight).max():.4f} (chordal sag {sag:.4f})"
    )
    assert np.abs(1 - r_loose).max() > 5 * sag  # blending spread candidates falls inside the sphere
    assert np.abs(1 - r_tight).max() <= sag + 1e-9


def test_projection_snaps_to_the_right_face():
    V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float64)
    F = torch.tensor([[0, 1, 2], [1, 3, 2]])
    pts = torch.tensor([[0.9, 0.8, 0.3], [0.1, 0.2, -0.5]], dtype=torch.float64)
    out = project_to_surface(pts, torch.tensor([[3, 0], [0, 3]]), V, F)
    assert torch.allclose(out, torch.tensor([[0.9, 0.8, 0.0], [0.1, 0.2, 0.0]], dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_blend_runs_on_cuda_with_the_same_numbers():
    gen = torch.Generator().manual_seed(3)
    maps = [_stochastic(64, 32, gen), _stochastic(32, 32, gen), _stochastic(32, 200, gen)]
    X = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    cpu = blend(*maps, X, top_k=8, tau=0.05)
    gpu = blend(*(m.cuda() for m in maps), X.cuda(), top_k=8, tau=0.05)
    assert torch.allclose(cpu.positions, gpu.positions.cpu(), atol=1e-9)
