"""Surface extraction: an SDF sampled on a coarse-to-fine grid, marching cubes in torch, cleanup.

Convention (the TripoSG VAE's): ``sdf_fn`` returns values > 0 inside, the surface is level 0
(pass the decoder's negated logits as they are). The grid spans ``[-bounds, bounds]^3`` with
``resolution`` cells per axis; lattice index ``i`` maps to ``-bounds + 2 * bounds * i / resolution``.

Deliberate difference from the reference: its flash extractor maps index units of a 504-cell grid with
a 512 divisor, so its mesh is shrunk by 504/512 (about 1.6 %) toward the -bounds corner. We use the
grid's own resolution, so the mesh sits on the SDF's zero level. The reference also runs dual marching
cubes (CUDA-only) and reverses its faces; we run primal marching cubes whose tables wind outward.

The triangle tables are derived here from the cube's face rings (see ``_case_loops``), not copied.
Everything runs as torch ops on the device of the given tensors: CPU and CUDA share the same code.
Several surfaces can be sampled in lockstep, each level's queries of all of them in a few batched SDF
calls (``extract_many``: a chain window's candidate surfaces), with the single-surface algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np
import torch

from ...contracts.errors import NumericalError
from .mesh_ops import Mesh, clean, decimate, ragged_range, remove_small_components

SdfFn = Callable[[torch.Tensor], torch.Tensor]

# ----------------------------------------------------------------------------- tables

CORNERS = np.array([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)])  # corner k = x + 2y + 4z
EDGES = np.array([(a, a | 1 << axis) for axis in range(3) for a in range(8) if not a >> axis & 1])  # (12,2)
EDGE_AXES = np.repeat(np.arange(3), 4)  # EDGES lists 4 edges per axis, x first


def _face_rings() -> list[list[int]]:
    """The 6 cube faces, corners listed counter-clockwise seen from outside the cube."""
    rings = []
    for axis in range(3):
        u, w = 1 << (axis + 1) % 3, 1 << (axis + 2) % 3  # e_u x e_w = e_axis
        for side in (0, 1):
            base = side << axis
            ring = [base, base | u, base | u | w, base | w]
            rings.append(ring if side else ring[::-1])
    return rings


def _case_loops(inside: list[bool]) -> list[list[int]]:
    """Closed, outward-oriented loops of crossed edges for one corner sign pattern.

    On each face, walking its ring counter-clockwise, a segment runs from each outside->inside crossing
    to the next inside->outside crossing. With the face normal n and the surface normal N (inside to
    outside) this is the direction N x n, so the loops wind counter-clockwise around N. Each crossed edge
    lies on two faces, starting a segment on one and ending one on the other: the segments form
    disjoint cycles. The rule depends only on the face's own corners (ambiguous faces keep inside
    corners apart), so neighbouring cubes agree on shared faces and the surface is watertight.
    """
    edge_id = {tuple(sorted(e)): i for i, e in enumerate(EDGES.tolist())}
    nxt: dict[int, int] = {}
    for ring in _face_rings():
        crossings = []
        for k in range(4):
            a, b = ring[k], ring[(k + 1) % 4]
            if inside[a] != inside[b]:
                crossings.append((edge_id[tuple(sorted((a, b)))], inside[b]))
        for j, (edge, entering) in enumerate(crossings):
            if entering:
                nxt[edge] = crossings[(j + 1) % len(crossings)][0]
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, e = [], start
        while e not in seen:
            seen.add(e)
            loop.append(e)
            e = nxt[e]
        loops.append(loop)
    return loops


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """Triangle table (256, T, 3) of edge ids (-1 padded) and triangle counts (256,), fan-triangulated loops."""
    cases = []
    for case in range(256):
        inside = [bool(case >> k & 1) for k in range(8)]
        cases.append([(loop[0], loop[i], loop[i + 1]) for loop in _case_loops(inside) for i in range(1, len(loop) - 1)])
    width = max(len(t) for t in cases)
    table = np.full((256, width, 3), -1, dtype=np.int64)
    for case, tris in enumerate(cases):
        table[case, : len(tris)] = np.reshape(tris, (-1, 3))
    return table, np.array([len(t) for t in cases], dtype=np.int64)


TRIANGLES, TRIANGLE_COUNTS = _build_tables()

# ----------------------------------------------------------------------------- marching cubes


def _keys(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Linear keys of integer lattice coordinates (..., 3) on a size^3 lattice."""
    return (coords[..., 0] * size + coords[..., 1]) * size + coords[..., 2]


def march(cells: torch.Tensor, corner_values: torch.Tensor, resolution: int, bounds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes over given cells: ``cells`` (M,3) int64 lattice coords, ``corner_values`` (M,8).

    Vertices on a lattice edge are shared by every cell that touches it (welded by global edge id),
    so the mesh is indexed and closed wherever the surface stays inside the given cells.
    Returns vertices (V,3) float32 in object space and faces (F,3) int64.
    """
    device = cells.device
    table, counts = torch.as_tensor(TRIANGLES, device=device), torch.as_tensor(TRIANGLE_COUNTS, device=device)
    corners, edges = torch.as_tensor(CORNERS, device=device), torch.as_tensor(EDGES, device=device)
    edge_axes = torch.as_tensor(EDGE_AXES, device=device)
    weights = 1 << torch.arange(8, device=device)
    case = ((corner_values > 0).long() * weights).sum(dim=1)
    owner, slot = ragged_range(counts[case])
    tri_edges = table[case[owner], slot]  # (T,3) local edge ids
    cell = owner[:, None].expand_as(tri_edges)
    a, b = edges[tri_edges, 0], edges[tri_edges, 1]
    va, vb = corner_values[cell, a], corner_values[cell, b]
    # keep vertices off the lattice points, so no triangle collapses to zero area and none is lost
    t = (va / (va - vb)).clamp(1e-3, 1 - 1e-3)
    base = cells[owner][:, None, :] + corners[a]
    pos = base.to(corner_values.dtype) + t[..., None] * (corners[b] - corners[a]).to(corner_values.dtype)
    edge_key = _keys(base, resolution + 1) * 3 + edge_axes[tri_edges]  # global id: lower lattice point, axis
    unique, inverse = torch.unique(edge_key.reshape(-1), return_inverse=True)
    vertices = torch.empty(len(unique), 3, dtype=corner_values.dtype, device=device)
    vertices[inverse] = pos.reshape(-1, 3)
    scale = 2.0 * bounds / resolution
    return (vertices * scale - bounds).float(), inverse.reshape(-1, 3)


# ----------------------------------------------------------------------------- sampling

# A surface's sampling as a generator: it yields the object-space points (P, 3) float32 whose SDF
# values it needs and receives those values (P,); it returns its crossed cells, their corner values
# and its query count. One driver evaluates a single surface, another many in lockstep (batched).
Sampling = Generator[torch.Tensor, torch.Tensor, "tuple[torch.Tensor, torch.Tensor, int]"]


class _Finite:
    """Whether every SDF value so far was finite: a flag on the device, read once per extraction (a
    read per decoder call would stall an accelerator's queue each time). NaN values only make a
    meaningless surface until then; nothing loops on them."""

    def __init__(self):
        self.ok: torch.Tensor | None = None

    def add(self, values: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(values).all()
        self.ok = finite if self.ok is None else self.ok & finite
        return values

    def check(self) -> None:
        if self.ok is not None and not bool(self.ok):
            raise NumericalError("the SDF decoder returned NaN or Inf; check the latent and weights")


def _evaluate(sdf_fn: SdfFn, xyz: torch.Tensor, chunk: int) -> torch.Tensor:
    """SDF values at points (P,3), in chunks of ``chunk`` queries, on the points' device (the sampling's:
    the host on MPS, where each call's values come back from the decoder on the device)."""
    with torch.no_grad():
        out = [sdf_fn(xyz[i : i + chunk]).reshape(-1).to(xyz.device, torch.float32) for i in range(0, len(xyz), chunk)]
    return torch.cat(out) if out else torch.zeros(0, device=xyz.device)


class _Sampler:
    """Queries each lattice point at most once over all levels (values are kept by finest-lattice key).

    Reuse saves decoder work, and it keeps shared points consistent: a decoder whose output depends on
    the batch can never give one lattice point two signs, which would crack the surface. Its methods
    are generators (see ``Sampling``): they yield the points they need and receive their values.
    """

    def __init__(self, bounds: float, finest: int, device: torch.device | str):
        self.bounds, self.finest = bounds, finest
        self.keys = torch.full((1,), -1, device=device)  # sorted finest-lattice keys; -1 never matches
        self.values = torch.zeros(1, device=device)
        self.queries = 0

    def point_values(self, points: torch.Tensor, resolution: int):
        """Values at distinct integer lattice points (P,3) of a ``resolution`` grid."""
        keys = _keys(points * (self.finest // resolution), self.finest + 1)
        pos = torch.searchsorted(self.keys, keys).clamp_max(len(self.keys) - 1)
        missing = torch.nonzero(self.keys[pos] != keys).squeeze(1)  # a lookup's one host sync: how many to ask
        values = self.values[pos]  # right where found; the missing ones are set below
        if len(missing):
            values[missing] = yield points[missing].to(torch.float32) * (2.0 * self.bounds / resolution) - self.bounds
        self.queries += len(missing)
        self.keys, order = torch.sort(torch.cat([self.keys, keys[missing]]))
        self.values = torch.cat([self.values, values[missing]])[order]
        return values

    def corner_values(self, cells: torch.Tensor, resolution: int):
        """Values (M,8) at the corners of ``cells`` on a ``resolution`` grid."""
        size = resolution + 1
        keys = _keys(cells[:, None, :] + torch.as_tensor(CORNERS, device=cells.device), size)
        unique, inverse = torch.unique(keys.reshape(-1), return_inverse=True)
        points = torch.stack([unique // (size * size), unique // size % size, unique % size], dim=1)
        values = yield from self.point_values(points, resolution)
        return values[inverse].reshape(-1, 8)

    def dense(self, resolution: int):
        """Every cell of a ``resolution`` grid with its corner values, by slicing the value grid."""
        r = torch.arange(resolution + 1, device=self.keys.device)
        values = yield from self.point_values(torch.cartesian_prod(r, r, r), resolution)
        grid = values.reshape(resolution + 1, -1, resolution + 1)
        n = resolution
        corners = torch.stack([grid[x : x + n, y : y + n, z : z + n] for x, y, z in CORNERS.tolist()], dim=-1)
        return torch.cartesian_prod(r[:-1], r[:-1], r[:-1]), corners.reshape(-1, 8)


def _crossed(corner_values: torch.Tensor) -> torch.Tensor:
    """Cells with corners on both sides of the surface."""
    inside = corner_values > 0
    return inside.any(dim=1) & ~inside.all(dim=1)


def _near(corner_values: torch.Tensor, band: float) -> torch.Tensor:
    """Cells crossed by the surface, or with a corner within ``band`` of it."""
    return _crossed(corner_values) | (corner_values.abs() < band).any(dim=1)


def _dilate(cells: torch.Tensor, resolution: int, radius: int) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=cells.device)
    offsets = torch.cartesian_prod(r, r, r)
    # clamped into the grid rather than dropped (no mask, no host sync): a clamped cell is the cell's own
    # neighbour at offset 0 on that axis, which the dilation holds anyway
    grown = (cells[:, None, :] + offsets).reshape(-1, 3).clamp(0, resolution - 1)
    return _unique_cells(grown, resolution)


def _unique_cells(cells: torch.Tensor, resolution: int) -> torch.Tensor:
    """Distinct cells, via 1-D keys (much cheaper than a row-wise unique)."""
    k = torch.unique(_keys(cells, resolution))
    return torch.stack([k // (resolution * resolution), k // resolution % resolution, k % resolution], dim=1)


def _children(cells: torch.Tensor) -> torch.Tensor:
    return (2 * cells[:, None, :] + torch.as_tensor(CORNERS, device=cells.device)).reshape(-1, 3)


_FACE_NEIGHBOURS = [(axis, side) for axis in range(3) for side in (0, 1)]
_FACE_CORNERS = [[c for c in range(8) if (c >> axis & 1) == side] for axis, side in _FACE_NEIGHBOURS]
_FACE_STEPS = [[(1 if side else -1) * (k == axis) for k in range(3)] for axis, side in _FACE_NEIGHBOURS]


def _close_holes(cells, values, sampler: _Sampler, resolution: int, max_rounds: int):
    """Add missing neighbours across every crossed cell face until the crossed region is closed."""
    on_face = torch.as_tensor(_FACE_CORNERS, device=cells.device)  # (6, 4) corners of each face
    steps = torch.as_tensor(_FACE_STEPS, device=cells.device)  # (6, 3) the neighbour across it
    for _ in range(max_rounds):
        keys = torch.sort(_keys(cells, resolution)).values
        crossed = _crossed(values[:, on_face].flatten(0, 1)).view(-1, 6)  # (M, 6) one mask for all faces
        cand = cells[:, None, :] + steps
        inside = ((cand >= 0) & (cand < resolution)).all(dim=2)
        ck = _keys(cand, resolution)
        pos = torch.searchsorted(keys, ck.reshape(-1)).clamp_max(len(keys) - 1).view_as(ck)
        cand = _unique_cells(cand[crossed & inside & (keys[pos] != ck)], resolution)  # 2 host syncs a round
        if len(cand) == 0:
            break
        cells = torch.cat([cells, cand])
        values = torch.cat([values, (yield from sampler.corner_values(cand, resolution))])
    return cells, values


@dataclass(frozen=True)
class Grid:
    """The sampling lattice of one surface: the cube [-bounds, bounds]^3, the finest and the dense
    coarsest resolution, the refinement band (SDF units) and the dilation (cells) around near cells.
    The extraction functions take these as keywords (``resolution=128``) and build one ``Grid``."""

    bounds: float = 1.005
    resolution: int = 256
    coarse_resolution: int = 64
    band: float = 0.0
    dilation: int = 1


def _levels(resolution: int, coarse_resolution: int) -> list[int]:
    """Resolutions from the dense coarse level up to ``resolution``, doubling each time."""
    levels = [resolution]
    while levels[0] > coarse_resolution and levels[0] % 2 == 0:
        levels.insert(0, levels[0] // 2)
    return levels


def _sampling(grid: Grid, device: torch.device | str) -> Sampling:
    """One surface's coarse-to-fine sampling (see ``sample_surface_cells``), as a ``Sampling``."""
    levels = _levels(grid.resolution, grid.coarse_resolution)
    sampler = _Sampler(grid.bounds, grid.resolution, device)
    cells, values = yield from sampler.dense(levels[0])
    for coarse, fine in zip(levels, levels[1:]):
        cells = _children(_dilate(cells[_near(values, grid.band)], coarse, grid.dilation))
        values = yield from sampler.corner_values(cells, fine)
    cells, values = yield from _close_holes(cells, values, sampler, grid.resolution, max_rounds=4 * grid.resolution)
    crossed = torch.nonzero(_crossed(values)).squeeze(1)
    return cells[crossed], values[crossed], sampler.queries


def sample_surface_cells(sdf_fn: SdfFn, chunk: int = 262_144, device: torch.device | str = "cpu",
                         **grid) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Crossed cells of the finest grid with their corner values, and the number of SDF queries made.
    ``grid``: the ``Grid`` fields (``resolution=``, ``coarse_resolution=``, ``bounds=``, ``band=``,
    ``dilation=``).

    The coarsest level (``resolution`` halved while above ``coarse_resolution`` and even) is dense; each
    finer level evaluates only the children of near cells (sign change or |value| < ``band``) dilated by
    ``dilation`` cells, reusing values at shared lattice points, so memory and queries follow the surface
    area, not the volume. At the finest level the crossed region is then grown across every crossed cell
    face until closed, so each surface piece the coarser levels saw comes out whole (watertight).
    ``band`` is in ``sdf_fn`` units and catches parts thinner than a coarse cell (the reference refines
    where |logit| < 0.95); 0 keeps sign changes only, right for metric SDFs. ``chunk`` bounds the points
    per ``sdf_fn`` call (the decoder's memory knob).
    """
    return _drive(_sampling(Grid(**grid), device), sdf_fn, chunk)


def _drive(sampling: Generator, sdf_fn: SdfFn, chunk: int):
    """Run one sampling generator to its end against ``sdf_fn``; its return value."""
    finite = _Finite()
    try:
        points = next(sampling)
        while True:
            points = sampling.send(finite.add(_evaluate(sdf_fn, points, chunk)))
    except StopIteration as done:
        finite.check()
        return done.value


def _mesh(cells, values, grid: Grid, min_component_ratio: float, face_budget: int | None) -> Mesh:
    return Mesh.from_torch(*_mesh_tensors(cells, values, grid, min_component_ratio, face_budget))


def _mesh_tensors(cells, values, grid: Grid, min_component_ratio: float,
                  face_budget: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    vertices, faces = clean(*march(cells, values, grid.resolution, grid.bounds))
    vertices, faces = remove_small_components(vertices, faces, min_component_ratio)
    if face_budget is not None and len(faces) > face_budget:
        vertices, faces = decimate(vertices, faces, face_budget)
    return vertices, faces


def extract(sdf_fn: SdfFn, chunk: int = 262_144, device: torch.device | str = "cpu",
            min_component_ratio: float = 0.0, face_budget: int | None = None, **grid) -> Mesh:
    """The zero level set of ``sdf_fn`` (positive inside) as a clean, outward-wound indexed mesh.

    ``sdf_fn(points (M,3) float32 on device) -> (M,)``; sampling as in ``sample_surface_cells``.
    Optional post-processing as for the reference anchor: drop pieces with fewer faces than
    ``min_component_ratio`` x the largest, then quadric decimation to ``face_budget`` faces.
    An SDF without a zero crossing gives an empty mesh.
    """
    cells, values, _ = sample_surface_cells(sdf_fn, chunk, device, **grid)
    return _mesh(cells, values, Grid(**grid), min_component_ratio, face_budget)


# ----------------------------------------------------------------------------- many surfaces at once

# sdf_many(surfaces (R,) int64, points (R, M, 3) float32) -> (R, M): row r holds points of surface
# surfaces[r] (zero-padded past its own length; several rows may hold pieces of one surface)
SdfManyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _row_length(chunk: int, surfaces: int, pad: Callable[[int], int]) -> int:
    """The longest row whose padded length ``pad(m)`` fits ``chunk // surfaces`` (one row per surface
    per call), or one padded row of the smallest size when that is below it; at most ``chunk``."""
    if pad(1) > chunk:
        return chunk
    target = max(chunk // surfaces, pad(1))
    lo, hi = 1, target
    while lo < hi:  # ``pad`` is non-decreasing: the largest m with pad(m) <= target
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if pad(mid) <= target else (lo, mid - 1)
    return lo


def _calls(requests: dict[int, torch.Tensor], chunk: int, pad: Callable[[int], int]) -> list[list[tuple]]:
    """Rows (surface, start, stop) grouped into calls: every request cut into rows of ``_row_length``,
    longest first; a call takes rows while ``pad(width) x rows <= chunk`` and its rows fill at least
    3/4 of its padded queries (full rows together, short ones with short ones: little padding)."""
    m = _row_length(chunk, len(requests), pad)
    rows = [(i, s, min(s + m, len(p))) for i, p in requests.items() for s in range(0, len(p), m)]
    rows.sort(key=lambda r: r[2] - r[1], reverse=True)
    calls: list[list[tuple]] = []
    filled = 0
    for row in rows:
        n = row[2] - row[1]
        width = pad(calls[-1][0][2] - calls[-1][0][1]) if calls else 0
        rows_after = len(calls[-1]) + 1 if calls else 0
        if calls and rows_after * width <= chunk and 4 * (filled + n) >= 3 * rows_after * width:
            calls[-1].append(row)
            filled += n
        else:
            calls.append([row])
            filled = n
    return calls


def _evaluate_many(sdf_many: SdfManyFn, requests: dict[int, torch.Tensor], chunk: int,
                   pad: Callable[[int], int], on_call, finite: _Finite) -> dict[int, torch.Tensor]:
    """Values at every surface's requested points, in the calls of ``_calls``."""
    parts: dict[int, list[tuple[int, torch.Tensor]]] = {i: [] for i in requests}
    device = next(iter(requests.values())).device
    for call in _calls(requests, chunk, pad):
        points = torch.zeros(len(call), call[0][2] - call[0][1], 3, device=device)
        for r, (i, a, b) in enumerate(call):
            points[r, : b - a] = requests[i][a:b]
        with torch.no_grad():
            surfaces = torch.tensor([i for i, _, _ in call], device=device)
            values = finite.add(sdf_many(surfaces, points).to(device, torch.float32))
        for r, (i, a, b) in enumerate(call):
            parts[i].append((a, values[r, : b - a]))
        if on_call is not None:
            on_call(sum(b - a for _, a, b in call))
    return {i: torch.cat([v for _, v in sorted(p, key=lambda x: x[0])]) for i, p in parts.items()}


def sample_many(sdf_many: SdfManyFn, count: int, chunk: int = 262_144, device: torch.device | str = "cpu",
                pad: Callable[[int], int] = lambda n: n, on_call: Callable[[int], None] | None = None,
                **grid) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """``sample_surface_cells`` of ``count`` surfaces advanced in lockstep: each round's requests of all
    of them go to ``sdf_many`` together (few large calls instead of many small ones on a GPU).

    Each surface runs the single-surface algorithm, so on a deterministic SDF the results are the
    single ones exactly. ``chunk`` bounds the queries per call, counted after ``pad`` (the callback's
    own padding of a row's length); ``on_call(queries)`` runs after each call (progress, cancel).
    """
    samplings = [_sampling(Grid(**grid), device) for _ in range(count)]
    results: list = [None] * count
    requests = {i: next(s) for i, s in enumerate(samplings)}  # the dense level always asks
    finite = _Finite()
    while requests:
        values = _evaluate_many(sdf_many, requests, chunk, pad, on_call, finite)
        for i in list(requests):
            try:
                requests[i] = samplings[i].send(values[i])
            except StopIteration as done:
                results[i] = done.value
                del requests[i]
    finite.check()
    return results


def extract_many(sdf_many: SdfManyFn, count: int, chunk: int = 262_144, device: torch.device | str = "cpu",
                 min_component_ratio: float = 0.0, face_budget: int | None = None,
                 pad: Callable[[int], int] = lambda n: n, on_call: Callable[[int], None] | None = None,
                 as_tensors: bool = False, **grid) -> list[Mesh] | list[tuple[torch.Tensor, torch.Tensor]]:
    """``extract`` of ``count`` surfaces, sampled together by ``sample_many`` (same meshes).
    ``as_tensors``: each one's (vertices, faces) tensors where they were made, no ``Mesh`` (a chain
    window's candidates stay on the device: no download, normals or upload)."""
    sampled = sample_many(sdf_many, count, chunk, device, pad, on_call, **grid)
    build, lattice = (_mesh_tensors if as_tensors else _mesh), Grid(**grid)
    return [build(cells, values, lattice, min_component_ratio, face_budget) for cells, values, _ in sampled]
