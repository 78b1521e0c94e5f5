"""Dense motion (docs/architecture.md 5.6): exact cases, fallbacks, components and the geodesic table."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph

from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.deform import (
    farthest_point_landmarks,
    nearest_landmarks,
    propagate,
)
from tests.engine.meshes import rotation, uv_sphere


def _rigid_clip(V, T=6):
    """Frames of a rotating, translating copy of V: (T, Nv, 3)."""
    return np.stack([V @ rotation([1, 2, 3], 0.25 * t).T + [0.1 * t, -0.05 * t, 0.02 * t] for t in range(T)])


def _mesh():
    V, F = uv_sphere(10, 20)
    return V * [1.0, 0.6, 0.4], F  # an ellipsoid: rotations are observable


def test_rigid_motion_is_reproduced_exactly():
    V, F = _mesh()
    clip = _rigid_clip(V)
    ids = farthest_point_landmarks(V, 40)
    out = propagate(V, F, ids, clip[:, ids], np.ones((6, 40)), smooth_sigma=0.0)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert np.abs(out - clip).max() < 1e-5


def test_smoothing_keeps_steady_motion_and_removes_jitter():
    V, F = _mesh()
    T = 9
    clip = np.stack([V + [0.2 * t, 0.0, -0.1 * t] for t in range(T)])  # constant velocity
    ids = farthest_point_landmarks(V, 40)
    jitter = np.random.default_rng(0).normal(scale=0.02, size=(T, 40, 3))
    clean = propagate(V, F, ids, clip[:, ids], np.ones((T, 40)), smooth_sigma=1.0)
    assert np.abs(clean - clip).max() < 1e-5  # local-linear smoothing does not lag steady motion
    raw = propagate(V, F, ids, clip[:, ids] + jitter, np.ones((T, 40)), smooth_sigma=0.0)
    smooth = propagate(V, F, ids, clip[:, ids] + jitter, np.ones((T, 40)), smooth_sigma=1.5)
    e_raw, e_smooth = (np.linalg.norm(o - clip, axis=2).mean() for o in (raw, smooth))
    print(f"\n[deform smoothing] jitter 0.02: mean error raw {e_raw:.4f}, smoothed {e_smooth:.4f}")
    assert e_smooth < 0.7 * e_raw


def test_unconfident_landmarks_fall_back_to_neighbours_and_frames():
    V, F = _mesh()
    clip = _rigid_clip(V)
    ids = farthest_point_landmarks(V, 40)
    conf = np.ones((6, 40))
    conf[:, 5] = 0.0  # never seen
    conf[2, :20] = 0.01  # half the landmarks below min_confidence in frame 2
    conf[4, :] = 0.0  # nothing seen in frame 4
    P = clip[:, ids].copy()
    P[conf < 0.05] = 1e3  # garbage where unconfident: must be ignored
    out = propagate(V, F, ids, P, conf, smooth_sigma=0.0, min_confidence=0.05, procrustes_neighbours=8)
    assert np.isfinite(out).all()
    seen = [0, 1, 2, 3, 5]
    assert np.abs(out[seen] - clip[seen]).max() < 1e-5
    assert np.abs(out[4] - out[3]).max() < 1e-6  # an unseen frame holds the previous frame's pose
    with_smoothing = propagate(V, F, ids, P, conf, smooth_sigma=1.0, min_confidence=0.05, procrustes_neighbours=8)
    gap = np.linalg.norm(with_smoothing[4] - clip[4], axis=1).mean()
    hold = np.linalg.norm(out[4] - clip[4], axis=1).mean()
    print(f"\n[deform gap] unseen frame: hold-previous error {hold:.4f}, bridged by smoothing {gap:.4f}")
    assert gap < 0.5 * hold


def test_components_move_independently():
    A, FA = uv_sphere(8, 16, radius=0.5, centre=(-0.52, 0, 0))
    B, FB = uv_sphere(8, 16, radius=0.5, centre=(0.52, 0, 0))  # 0.04 apart: Euclidean skinning would mix
    speck = np.array([[0.0, 1.5, 0], [0.01, 1.5, 0], [0, 1.51, 0]])  # tiny piece without landmarks
    V = np.concatenate([A, B, speck])
    F = np.concatenate([FA, FB + len(A), [[0, 1, 2] + np.array(len(A) + len(B))]])
    T = 4
    up = np.stack([np.r_[np.zeros((len(A), 3)), np.tile([0, 0, 0.3 * t], (len(B) + 3, 1))] for t in range(T)])
    clip = V[None] + up
    ids = farthest_point_landmarks(V[: len(A) + len(B)], 60)
    out = propagate(V, F, ids, clip[:, ids], np.ones((T, 60)), smooth_sigma=0.0, skin_sigma=0.2)
    body = slice(0, len(A) + len(B))
    assert np.abs(out[:, body] - clip[:, body]).max() < 1e-5
    assert np.isfinite(out).all()  # the speck follows its Euclidean neighbours
    assert np.abs(out[:, -3:, 2]).max() < 0.3 * (T - 1) + 1e-6


def test_geodesic_table_matches_dijkstra():
    V, F = uv_sphere(14, 28)
    V = V * [1.0, 0.5, 1.5]
    ids = farthest_point_landmarks(V, 30)
    dist, src = nearest_landmarks(V, F, ids, 6)
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    w = np.linalg.norm(V[e[:, 0]] - V[e[:, 1]], axis=1)
    G = scipy.sparse.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(len(V), len(V))).tocsr()
    ref = scipy.sparse.csgraph.dijkstra(G, directed=False, indices=ids).T  # (Nv, L)
    ref_sorted = np.sort(ref, axis=1)[:, :6]
    assert np.allclose(dist, ref_sorted, atol=1e-12)
    assert np.allclose(np.take_along_axis(ref, src, axis=1), dist, atol=1e-12)


def test_landmarks_are_spread_and_distinct():
    V, _ = uv_sphere(20, 40)
    ids = farthest_point_landmarks(V, 50)
    assert len(np.unique(ids)) == 50
    P = V[ids]
    gaps = np.linalg.norm(P[:, None] - P[None], axis=2) + np.eye(50) * 9
    cover = np.linalg.norm(V[:, None] - P[None], axis=2).min(axis=1).max()
    assert gaps.min() >= cover - 1e-12  # farthest-point property: spacing >= covering radius


def test_settings_and_shapes_are_checked():
    V, F = _mesh()
    ids = farthest_point_landmarks(V, 10)
    P, C = np.tile(V[ids], (2, 1, 1)), np.ones((2, 10))
    out = propagate(V, F, ids, P, C, **Settings().to_dict())  # pipeline settings pass through
    assert np.abs(out - V).max() < 1e-5
    with pytest.raises(ValueError, match="unknown setting"):
        propagate(V, F, ids, P, C, skin_sigmaa=0.1)
    with pytest.raises(ValueError, match="shapes disagree"):
        propagate(V, F, ids, P[:, :5], C)
    with pytest.raises(ValueError, match="distinct"):
        propagate(V, F, np.r_[ids[:9], ids[0]], P, C)


def test_skinning_prepared_once_moves_each_window_as_propagate_does(monkeypatch):
    """The pipeline's split (geodesics once per anchor, a cheap move per window) changes no number,
    whatever frame block the batched skinning uses."""
    from blender_stchain.engine.deform import Skinning, motion

    V, F = _mesh()
    ids = farthest_point_landmarks(V, 40)
    rng = np.random.default_rng(3)
    skinning = Skinning.prepare(V, F, ids, smooth_sigma=0.5)
    for start in (0, 5):  # two windows of one clip
        clip = _rigid_clip(V, T=6 + start)[start:]
        P = clip[:, ids] + rng.normal(0, 0.01, (6, 40, 3))
        C = rng.uniform(0.2, 1.0, (6, 40))
        expected = propagate(V, F, ids, P, C, smooth_sigma=0.5)
        np.testing.assert_array_equal(skinning.move(P, C), expected)
        monkeypatch.setattr(motion, "_SKIN_BLOCK", 1)  # one frame per batched step
        np.testing.assert_array_equal(skinning.move(P, C), expected)
        monkeypatch.undo()


def test_skinning_checks_track_shapes():
    from blender_stchain.engine.deform import Skinning

    V, F = _mesh()
    ids = farthest_point_landmarks(V, 40)
    with pytest.raises(ValueError, match="shapes disagree"):
        Skinning.prepare(V, F, ids).move(np.zeros((4, 39, 3)), np.ones((4, 39)))
