"""Many surfaces sampled in lockstep with batched SDF calls (surface.extract_many): the same meshes as
one ``surface.extract`` each, with bounded calls. The analytic SDFs are pointwise, so a point's value
never depends on its batch and the meshes must be equal exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blender_stchain.contracts.errors import NumericalError
from blender_stchain.engine.backbone.facade import query_bucket
from blender_stchain.engine.geometry import surface


def ball(centre, radius):
    c = torch.tensor(centre)
    return lambda p: radius - (p - c).norm(dim=1)


def torus(p):
    ring = torch.stack([p[:, :2].norm(dim=1) - 0.5, p[:, 2]], dim=1)
    return 0.2 - ring.norm(dim=1)


def waves(seed):
    """A blobby field, pointwise (no matmul, whose rounding could depend on the batch)."""
    g = torch.Generator().manual_seed(seed)
    freq, phase = torch.randn(6, 3, generator=g) * 6, torch.rand(6, generator=g) * 6.3
    return lambda p: 0.1 * torch.sin((p[:, None, :] * freq).sum(-1) + phase).sum(1) + 0.4 - p.norm(dim=1)


def nothing(p):
    return -1.0 - p.norm(dim=1)


FIELDS = [ball((0.1, 0.0, -0.2), 0.5), torus, waves(0), nothing, ball((0.0, 0.3, 0.0), 0.25), waves(1)]
GRID = dict(resolution=48, coarse_resolution=12)


def batched(fields, log):
    def sdf_many(surfaces, points):
        log.append((surfaces.tolist(), tuple(points.shape)))
        return torch.stack([fields[i](p) for i, p in zip(surfaces.tolist(), points)])
    return sdf_many


@pytest.mark.parametrize("chunk,pad", [(20_000, lambda n: n), (6_000, query_bucket), (300, query_bucket)])
def test_batched_meshes_equal_single_ones(chunk, pad):
    log, ticks = [], []
    meshes = surface.extract_many(batched(FIELDS, log), len(FIELDS), chunk=chunk, pad=pad, on_call=ticks.append,
                                  **GRID)
    for fn, mesh in zip(FIELDS, meshes):
        single = surface.extract(fn, chunk=chunk, **GRID)
        np.testing.assert_array_equal(mesh.vertices, single.vertices)
        np.testing.assert_array_equal(mesh.faces, single.faces)
    assert len(meshes[3].vertices) == 0 and all(len(m.faces) > 100 for i, m in enumerate(meshes) if i != 3)
    print(f"chunk {chunk}: {len(log)} batched calls, rows per call up to {max(len(s) for s, _ in log)}")
    assert len(log) > 3 and len(ticks) == len(log)
    limit = max(chunk, pad(1))  # a single padded row may be larger than a tiny chunk (as for one surface)
    assert all(len(s) * pad(shape[1]) <= limit for s, shape in log)
    assert all(shape[2] == 3 for _, shape in log)


def test_query_counts_and_values_per_surface():
    sampled = surface.sample_many(batched(FIELDS, []), len(FIELDS), chunk=5_000, **GRID)
    for fn, (cells, values, queries) in zip(FIELDS, sampled):
        s_cells, s_values, s_queries = surface.sample_surface_cells(fn, chunk=5_000, **GRID)
        assert queries == s_queries > 13**3 - 1  # the dense level at least
        assert torch.equal(cells, s_cells) and torch.equal(values, s_values)


def test_on_call_counts_every_real_query_once():
    ticks = []
    sampled = surface.sample_many(batched(FIELDS, []), len(FIELDS), chunk=7_000, on_call=ticks.append, **GRID)
    assert sum(ticks) == sum(q for _, _, q in sampled)


def test_nan_in_one_surface_is_a_clear_error():
    def broken(p):
        out = torus(p)
        out[-1] = float("inf")
        return out

    with pytest.raises(NumericalError, match="NaN or Inf"):
        surface.extract_many(batched([torus, broken], []), 2, chunk=4096, **GRID)


def test_row_length_fits_the_chunk_after_padding():
    for chunk, count in ((262_144, 15), (4096, 15), (4096, 1), (1000, 7), (100, 3)):
        m = surface._row_length(chunk, count, query_bucket)
        rows = max(1, chunk // query_bucket(m))
        assert rows * query_bucket(m) <= max(chunk, 256) and m <= chunk
        assert query_bucket(m + 1) > max(chunk // count, 256) or m == chunk  # the longest such row
