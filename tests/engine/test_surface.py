"""Surface extraction against analytic SDFs (positive inside): accuracy, topology, winding, cleanup, budget."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from blender_stchain.contracts.errors import NumericalError
from blender_stchain.engine.geometry import mesh_ops, surface
from blender_stchain.engine.geometry.mesh_ops import Mesh

BOUNDS = 1.005
RADIUS = 0.6
MAJOR, MINOR = 0.5, 0.2


def sphere(p: torch.Tensor) -> torch.Tensor:
    return RADIUS - p.norm(dim=1)


def torus(p: torch.Tensor) -> torch.Tensor:
    ring = torch.stack([p[:, :2].norm(dim=1) - MAJOR, p[:, 2]], dim=1)
    return MINOR - ring.norm(dim=1)


def sphere_distance(x: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(x, axis=1) - RADIUS)


def torus_distance(x: np.ndarray) -> np.ndarray:
    ring = np.stack([np.linalg.norm(x[:, :2], axis=1) - MAJOR, x[:, 2]], axis=1)
    return np.abs(np.linalg.norm(ring, axis=1) - MINOR)


def sphere_samples(n: int = 20000) -> np.ndarray:
    """Fibonacci points on the analytic sphere."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return RADIUS * np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def torus_samples(n: int = 200) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, n, endpoint=False), np.linspace(0, 2 * np.pi, n // 2, endpoint=False))
    u, v = u.ravel(), v.ravel()
    ring = MAJOR + MINOR * np.cos(v)
    return np.stack([ring * np.cos(u), ring * np.sin(u), MINOR * np.sin(v)], axis=1)


def surface_points(mesh: Mesh, k: int = 4) -> np.ndarray:
    """Points of the mesh itself: a barycentric grid of (k+1)(k+2)/2 points on every face."""
    bary = np.array([(i, j, k - i - j) for i in range(k + 1) for j in range(k + 1 - i)], dtype=np.float32) / k
    return np.einsum("bc,fcd->fbd", bary, mesh.vertices[mesh.faces]).reshape(-1, 3)


def hausdorff(mesh: Mesh, distance_fn, samples: np.ndarray) -> tuple[float, float]:
    """(mesh -> analytic surface, analytic surface -> mesh); both from dense mesh samples (the second is an upper bound)."""
    to_surface = float(distance_fn(surface_points(mesh)).max())
    to_mesh = float(cKDTree(surface_points(mesh)).query(samples)[0].max())
    return to_surface, to_mesh


@pytest.fixture(scope="module")
def sphere64() -> Mesh:
    return surface.extract(sphere, resolution=64, coarse_resolution=16)


@pytest.fixture(scope="module")
def torus64() -> Mesh:
    return surface.extract(torus, resolution=64, coarse_resolution=16)


@pytest.fixture(scope="module")
def torus64_dense() -> Mesh:
    return surface.extract(torus, resolution=64, coarse_resolution=64)


# ----------------------------------------------------------------------------- tables


def test_every_case_uses_exactly_its_crossed_edges_and_closes_its_loops():
    for case in range(256):
        inside = [(case >> k) & 1 for k in range(8)]
        crossed = {i for i, (a, b) in enumerate(surface.EDGES) if inside[a] != inside[b]}
        tris = surface.TRIANGLES[case, : surface.TRIANGLE_COUNTS[case]]
        assert set(tris.ravel().tolist()) == crossed, case
        assert (surface.TRIANGLES[case, surface.TRIANGLE_COUNTS[case] :] == -1).all()
    assert surface.TRIANGLE_COUNTS[0] == surface.TRIANGLE_COUNTS[255] == 0
    assert surface.TRIANGLE_COUNTS.max() == 5  # the classical marching-cubes maximum


# ----------------------------------------------------------------------------- analytic shapes


@pytest.mark.parametrize("name", ["sphere", "torus"])
def test_hausdorff_below_one_cell(name, sphere64, torus64):
    mesh, dist, samples = (
        (sphere64, sphere_distance, sphere_samples()) if name == "sphere" else (torus64, torus_distance, torus_samples())
    )
    cell = 2 * BOUNDS / 64
    to_surface, to_mesh = hausdorff(mesh, dist, samples)
    print(f"{name} r64: {len(mesh.faces)} faces, mesh->surface {to_surface / cell:.3f} cell, surface->mesh <= {to_mesh / cell:.3f} cell")
    assert max(to_surface, to_mesh) < cell


def test_sphere_topology_winding_normals(sphere64):
    m = sphere64
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int32 and m.normals.dtype == np.float32
    assert np.isfinite(m.vertices).all() and np.isfinite(m.normals).all()
    assert m.is_watertight
    assert m.euler_characteristic == 2 and m.genus == 0
    exact_volume, exact_area = 4 / 3 * np.pi * RADIUS**3, 4 * np.pi * RADIUS**2
    print(f"sphere volume {m.volume:.5f} (exact {exact_volume:.5f}), area {m.area:.5f} (exact {exact_area:.5f})")
    assert m.volume > 0 and abs(m.volume / exact_volume - 1) < 0.01
    assert abs(m.area / exact_area - 1) < 0.02
    outward = m.vertices / np.linalg.norm(m.vertices, axis=1, keepdims=True)  # -grad of the SDF
    cos = (m.normals * outward).sum(1)
    print(f"sphere normal vs analytic: min cos {cos.min():.4f}, mean {cos.mean():.5f}")
    assert cos.min() > 0.9 and cos.mean() > 0.995


def test_torus_topology_winding_normals(torus64):
    m = torus64
    assert m.is_watertight
    assert m.euler_characteristic == 0 and m.genus == 1
    exact_volume = 2 * np.pi**2 * MAJOR * MINOR**2
    print(f"torus volume {m.volume:.5f} (exact {exact_volume:.5f})")
    assert m.volume > 0 and abs(m.volume / exact_volume - 1) < 0.02
    xy = m.vertices[:, :2]
    centre = np.concatenate([MAJOR * xy / np.linalg.norm(xy, axis=1, keepdims=True), np.zeros_like(xy[:, :1])], 1)
    outward = m.vertices - centre
    outward /= np.linalg.norm(outward, axis=1, keepdims=True)
    cos = (m.normals * outward).sum(1)
    print(f"torus normal vs analytic: min cos {cos.min():.4f}, mean {cos.mean():.5f}")
    assert cos.min() > 0.9 and cos.mean() > 0.99


# ----------------------------------------------------------------------------- coarse-to-fine


def counting(fn):
    calls = {"points": 0, "devices": set()}

    def wrapped(p):
        calls["points"] += len(p)
        calls["devices"].add(p.device)
        return fn(p)

    return wrapped, calls


def test_coarse_to_fine_queries_far_fewer_points():
    fn, calls = counting(torus)
    cells, _, queries = surface.sample_surface_cells(fn, resolution=128, coarse_resolution=16)
    dense_count = 129**3
    print(f"coarse-to-fine r128: {queries} SDF queries vs {dense_count} dense ({queries / dense_count:.1%}), {len(cells)} cells marched")
    assert calls["points"] == queries < 0.12 * dense_count


def test_coarse_to_fine_matches_dense(torus64, torus64_dense):
    np.testing.assert_array_equal(torus64.vertices, torus64_dense.vertices)  # vertices are ordered by lattice edge
    assert {tuple(f) for f in torus64.faces.tolist()} == {tuple(f) for f in torus64_dense.faces.tolist()}


def test_hole_closing_recovers_removed_cells():
    """Crossed cells cut out of a closed surface are walked back in from their crossed neighbours."""
    fn = _random_field(1, 0.0)
    cells, values, _ = surface.sample_surface_cells(fn, resolution=32, coarse_resolution=32)
    keep = torch.ones(len(cells), dtype=torch.bool)
    keep[::7] = False  # punch holes all over the surface
    sampler = surface._Sampler(BOUNDS, finest=32, device="cpu")
    closing = surface._close_holes(cells[keep], values[keep], sampler, 32, max_rounds=128)
    closed, closed_values = surface._drive(closing, fn, 4096)
    closed = closed[surface._crossed(closed_values)]
    print(f"removed {int((~keep).sum())} of {len(cells)} crossed cells; closing re-queried {sampler.queries} points")
    assert {tuple(c) for c in closed.tolist()} == {tuple(c) for c in cells.tolist()}


def test_sparse_levels_without_dilation_stay_watertight():
    """No dilation: the coarse 8^3 level misses crossed cells, which the closing step recovers."""
    fn = _random_field(1, 0.0)
    mesh = surface.extract(fn, resolution=48, coarse_resolution=8, dilation=0)
    dense = surface.extract(fn, resolution=48, coarse_resolution=48)
    print(f"sparse {len(mesh.faces)} faces vs dense {len(dense.faces)}")
    assert mesh.is_watertight and len(mesh.faces) > 0.9 * len(dense.faces)
    assert {tuple(v) for v in mesh.vertices.tolist()} <= {tuple(v) for v in dense.vertices.tolist()}


def test_no_lattice_point_is_queried_twice():
    """A batch-dependent decoder must not see a point twice, or one point could get two signs (a crack)."""
    seen = []

    def recording(p):
        seen.append(p.clone())
        return field(p)

    field = _random_field(1, 0.0)

    surface.extract(recording, resolution=48, coarse_resolution=8, dilation=0)  # levels 6..48 + hole closing
    finest = torch.cat(seen)
    print(f"{len(seen)} decoder calls, {len(finest)} points")
    assert len(torch.unique(finest, dim=0)) == len(finest)


def test_non_power_of_two_levels_match_dense():
    assert surface._levels(192, 64) == [48, 96, 192]
    assert surface._levels(100, 64) == [50, 100]
    a = surface.extract(sphere, resolution=48, coarse_resolution=16)
    b = surface.extract(sphere, resolution=48, coarse_resolution=48)
    np.testing.assert_array_equal(a.vertices, b.vertices)


def test_same_code_on_any_device():
    """No device branches: the device is only where tensors live, and the SDF sees points on it."""
    for module in (surface, mesh_ops):
        source = inspect.getsource(module)
        for needle in ("cuda", "is_cuda", "device.type", "mps"):
            assert needle not in source, (module.__name__, needle)
    fn, calls = counting(sphere)
    surface.extract(fn, resolution=32, coarse_resolution=16, device=torch.device("cpu"))
    assert calls["devices"] == {torch.device("cpu")}
    cells, values, _ = surface.sample_surface_cells(sphere, resolution=32, coarse_resolution=16)
    v, f = surface.march(cells, values, 32, BOUNDS)
    assert v.device == cells.device == f.device


def test_nan_from_decoder_is_a_clear_error():
    def broken(p):
        out = sphere(p)
        out[0] = float("nan")
        return out

    with pytest.raises(NumericalError, match="NaN"):
        surface.extract(broken, resolution=16, coarse_resolution=16)


# ----------------------------------------------------------------------------- cleanup


def test_small_floating_pieces_removed():
    def with_speck(p):  # the big sphere plus a small ball outside it
        return torch.maximum(sphere(p), 0.08 - (p - torch.tensor([0.85, 0.0, 0.0])).norm(dim=1))

    both = surface.extract(with_speck, resolution=64, coarse_resolution=16)
    sizes = np.bincount(both.components)
    print(f"components before cleanup: {sorted(sizes.tolist())}")
    assert len(sizes) == 2 and sizes.min() < 0.02 * sizes.max()
    kept = Mesh.from_torch(*mesh_ops.remove_small_components(*both.torch(), min_component_ratio=0.02))
    assert len(np.unique(kept.components)) == 1 and kept.is_watertight
    assert len(kept.faces) == sizes.max()
    assert np.abs(np.linalg.norm(kept.vertices, axis=1) - RADIUS).max() < 2 * BOUNDS / 64


def test_degenerate_duplicate_and_unreferenced_removed():
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5], [1, 0, 0]], dtype=torch.float32)
    f = torch.tensor([[0, 1, 2], [1, 2, 0], [0, 2, 3], [0, 0, 3], [0, 5, 3]])
    cv, cf = mesh_ops.clean(v, f)
    # vertex 5 welds onto 1; face 1 duplicates face 0; face 3 repeats a vertex; vertex 4 is unused
    assert len(cv) == 4 and len(cf) == 3
    corners = {tuple(sorted(tuple(cv[i].tolist()) for i in face)) for face in cf.tolist()}
    o, x, y, z = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
    assert corners == {tuple(sorted(t)) for t in [(o, x, y), (o, y, z), (o, x, z)]}


# ----------------------------------------------------------------------------- decimation


@pytest.mark.parametrize("budget", [4000, 1000])
def test_decimation_hits_budget_and_keeps_shape(torus64, budget):
    v, f = torus64.torch()
    dv, df = mesh_ops.decimate(v, f, budget)
    m = Mesh.from_torch(dv, df)
    cell = 2 * BOUNDS / 64
    to_surface, to_mesh = hausdorff(m, torus_distance, torus_samples())
    print(
        f"decimated {len(f)} -> {len(df)} faces (budget {budget}): mesh->surface {to_surface / cell:.3f} cell, "
        f"surface->mesh <= {to_mesh / cell:.3f} cell, volume {m.volume:.5f} vs {torus64.volume:.5f}"
    )
    assert 0.95 * budget <= len(df) <= budget
    assert m.is_watertight and m.genus == 1
    assert to_surface < 0.5 * cell and to_mesh < 1.5 * cell  # 1000 faces on this torus: chord sag ~ 1 cell
    assert abs(m.volume / torus64.volume - 1) < 0.02


@pytest.mark.slow
def test_decimation_reaches_a_deep_budget():
    """Fifteen-fold reduction of a fine mesh (smooth cost fields once starved the parallel passes)."""
    fine = surface.extract(torus, resolution=128, coarse_resolution=16)
    v, f = fine.torch()
    dv, df = mesh_ops.decimate(v, f, len(f) // 15)
    m = Mesh.from_torch(dv, df)
    to_surface, _ = hausdorff(m, torus_distance, torus_samples())
    print(f"decimated {len(f)} -> {len(df)} faces, mesh->surface {to_surface:.4f}")
    assert len(df) == len(f) // 15 and m.is_watertight and m.genus == 1
    assert to_surface < 2 * BOUNDS / 64


def test_decimation_never_folds_a_small_closed_piece():
    """An octahedron asked for 2 faces stops at a tetrahedron, still closed, instead of folding flat."""
    v = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32)
    f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    assert mesh_ops.is_watertight(f) and mesh_ops.signed_volume(v, f) > 0
    dv, df = mesh_ops.decimate(v, f, 2)
    print(f"octahedron decimated to {len(df)} faces")
    assert len(df) == 4 and mesh_ops.is_watertight(df) and mesh_ops.signed_volume(dv, df) > 0


def test_extract_with_budget_and_cleanup():
    m = surface.extract(sphere, resolution=32, coarse_resolution=16, min_component_ratio=0.02, face_budget=800)
    assert len(m.faces) <= 800 and m.is_watertight and m.genus == 0 and m.volume > 0
    assert np.isfinite(m.normals).all()


def test_empty_field_gives_empty_mesh():
    m = surface.extract(lambda p: -torch.ones(len(p)), resolution=16, coarse_resolution=8, face_budget=10)
    assert m.vertices.shape == (0, 3) and m.faces.shape == (0, 3) and m.normals.shape == (0, 3)


def test_decimation_keeps_open_boundaries_in_place():
    """A sphere larger than the grid is cut open at the bounds; its rims must not move or close."""
    big = surface.extract(lambda p: 1.3 - p.norm(dim=1), resolution=32, coarse_resolution=16)
    v, f = big.torch()
    counts = mesh_ops.edge_face_counts(f)
    assert not big.is_watertight and (counts == 1).any()
    dv, df = mesh_ops.decimate(v, f, len(f) // 3)
    rim_before = {tuple(p) for p in v[_rim_vertices(f)].tolist()}
    rim_after = {tuple(p) for p in dv[_rim_vertices(df)].tolist()}
    print(f"clipped sphere {len(f)} -> {len(df)} faces, rim vertices {len(rim_before)} -> {len(rim_after)}")
    assert rim_after == rim_before and len(df) <= len(f) // 3


def _rim_vertices(faces: torch.Tensor) -> torch.Tensor:
    n = int(faces.max()) + 1
    keys, counts = torch.unique(mesh_ops._edge_keys(faces, n), return_counts=True)
    single = keys[counts == 1]
    return torch.unique(torch.cat([single // n, single % n]))


def _random_field(seed: int, quantum: float):
    """A smooth random blob field (negative near the bounds); ``quantum`` > 0 snaps values to a step,
    so many lattice points sit exactly on level 0 and ambiguous cube faces are common."""
    g = torch.Generator().manual_seed(seed)
    freq, phase, amp = torch.randn(12, 3, generator=g) * 8, torch.rand(12, generator=g) * 6.3, torch.rand(12, generator=g)

    def fn(p):
        waves = (amp * torch.sin(p @ freq.T + phase)).sum(dim=1) / amp.sum()  # in [-1, 1]
        value = 0.6 * waves + 0.35 - p.norm(dim=1)  # < 0 at the bounds, so every piece is closed
        return torch.round(value / quantum) * quantum if quantum else value

    return fn


@pytest.mark.parametrize("seed,quantum", [(0, 0.0), (1, 0.0), (2, 0.05), (3, 0.05)])
def test_random_fields_give_closed_consistently_wound_meshes(seed, quantum):
    fn = _random_field(seed, quantum)
    dense = surface.extract(fn, resolution=32, coarse_resolution=32)
    sparse = surface.extract(fn, resolution=32, coarse_resolution=8)
    print(
        f"seed {seed} quantum {quantum}: dense {len(dense.faces)} faces in {dense.components.max() + 1} pieces, "
        f"genus {dense.genus}, volume {dense.volume:.4f}; coarse-to-fine from 8^3 kept {len(sparse.faces)} faces"
    )
    for mesh in (dense, sparse):
        assert len(mesh.faces) > 100 and mesh.is_watertight and mesh.volume > 0
        assert np.isfinite(mesh.vertices).all() and np.isfinite(mesh.normals).all()
    # pieces smaller than a coarse cell may be missed, but whatever is found is exactly the dense surface
    assert {tuple(v) for v in sparse.vertices.tolist()} <= {tuple(v) for v in dense.vertices.tolist()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_welding_and_duplicate_faces_match_row_wise_unique(dtype):
    """The 1-D key versions of vertex welding and duplicate-face removal give what torch's row-wise
    ``unique(dim=0)`` gives, order included (value equality, so -0.0 welds with 0.0), on a mesh full of
    repeats with negative, zero and tiny values."""
    from blender_stchain.engine.geometry import mesh_ops

    g = torch.Generator().manual_seed(0)
    V = torch.randint(0, 12, (5000, 3), generator=g).to(dtype) / 7
    V[::3] = -V[::3]  # -0.0 wherever a coordinate is 0
    V[5::11] *= 1e-30 if dtype == torch.float32 else 1e-300  # tiny values order too
    F = torch.randint(0, 5000, (9000, 3), generator=g)
    F[::5, 1] = F[::5, 0]  # degenerate
    F[1::7] = F[0::7][: len(F[1::7])].roll(1, 1)  # the same face, rotated
    unique, faces = mesh_ops.merge_coincident(V, F)
    reference, inverse = torch.unique(V, dim=0, return_inverse=True)
    assert len(unique) == len(reference) < 3000
    assert torch.equal(unique, reference) and torch.equal(faces, inverse[F])  # same order as well
    kept = mesh_ops.drop_degenerate_faces(F)
    proper = F[(F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 2] != F[:, 0])]
    assert len(kept) == len(torch.unique(proper.sort(1).values, dim=0)) < len(proper)
    assert len(torch.unique(kept.sort(1).values, dim=0)) == len(kept)
