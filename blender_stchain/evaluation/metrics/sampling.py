"""Surface point sampling with ActionBench's seeds and random streams.

ActionBench (facebookresearch/actionmesh@66db12e, ``actionbench/sample_mesh.py`` and
``actionbench/sample_point_cloud.py``, unchanged since cbb4d00) samples the predicted meshes in two ways:

- per frame, independent: ``trimesh.sample.sample_surface(mesh, count, seed=seed + frame)``, i.e. a
  fresh ``numpy.random.default_rng(seed)``: face picks by ``searchsorted`` on the cumulative face
  areas, then two uniforms per point folded into the triangle (``surface_points`` draws the same
  stream, so the points are the same);
- synchronized (for CD-M): face picks and barycentric weights drawn once on frame 0 with
  pytorch3d's recipe (``torch.manual_seed(seed)``, ``multinomial`` over float32 face areas with
  replacement, then ``torch.rand(2, 1, n)`` -> ``(1 - sqrt(u), sqrt(u)(1 - v), sqrt(u) v)``) and
  applied to every frame (``synchronized_points``, CPU torch like the reference);
- sub-sampling of a (T, N, C) cloud: one ``numpy.random.RandomState(seed).permutation`` shared by all
  frames (``subsample``).
"""

from __future__ import annotations

import numpy as np


def face_areas(vertices, faces) -> np.ndarray:
    """Triangle areas (float64), computed as trimesh does: |(b - a) x (c - a)| / 2."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    return np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2.0


def surface_points(vertices, faces, count: int, seed: int) -> np.ndarray:
    """``count`` area-uniform points (count, 3) on one mesh, trimesh's stream for ``seed``."""
    V = np.asarray(vertices, np.float64)
    F = np.asarray(faces, np.int64)
    cum = np.cumsum(face_areas(V, F))
    random = np.random.default_rng(seed).random
    face = np.searchsorted(cum, random(count) * cum[-1])
    origin = V[F[:, 0]][face]
    edges = (V[F[:, 1:]] - V[F[:, 0]][:, None])[face]  # (count, 2, 3)
    lengths = random((count, 2, 1))
    fold = lengths.sum(axis=1).reshape(-1) > 1.0
    lengths[fold] -= 1.0
    return (edges * np.abs(lengths)).sum(axis=1) + origin


def surface_points_per_frame(vertices, faces, count: int, seed: int) -> np.ndarray:
    """(T, count, 3): frame ``i`` sampled independently with ``seed + i`` (ActionBench's ``sample_meshes``)."""
    return np.stack([surface_points(v, faces, count, seed + i) for i, v in enumerate(vertices)])


def synchronized_points(vertices, faces, count: int, seed: int) -> np.ndarray:
    """(T, count, 3) tracked points: one set of (face, barycentric) draws on frame 0, every frame."""
    import torch

    V0 = torch.as_tensor(np.asarray(vertices[0]), dtype=torch.float32)
    F = torch.as_tensor(np.asarray(faces), dtype=torch.int64)
    tri = V0[F]
    areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1) / 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        face = areas[None].multinomial(count, replacement=True)[0].numpy()
        u, v = torch.rand(2, 1, count, dtype=torch.float32)[:, 0].numpy()
    su = np.sqrt(u)
    w = np.stack([1.0 - su, su * (1.0 - v), su * v], axis=1).astype(np.float32)
    return np.stack([np.einsum("nk,nkc->nc", w, np.asarray(Vt, np.float32)[np.asarray(faces)[face]])
                     for Vt in vertices])


def tracked_points(vertices, faces, count: int, seed: int) -> np.ndarray:
    """(T, count, 3) tracked surface points, numpy only (make-bench's GT clouds; no torch in Blender)."""
    F = np.asarray(faces, np.int64)
    V0 = np.asarray(vertices[0], np.float64)
    rng = np.random.default_rng(seed)
    area = face_areas(V0, F)
    face = rng.choice(len(F), count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    su = np.sqrt(u)
    w = np.stack([1.0 - su, su * (1.0 - v), su * v], axis=1)
    return np.stack([np.einsum("nk,nkc->nc", w, np.asarray(Vt, np.float64)[F[face]])
                     for Vt in vertices]).astype(np.float32)


def subsample(points: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The same ``count`` indices of every frame of a (T, N, C) cloud (all of it when N <= count)."""
    n = points.shape[1]
    if n <= count:
        return points
    return points[:, np.random.RandomState(seed=seed).permutation(n)[:count]]
