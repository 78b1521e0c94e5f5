"""Metric functions on cases with known answers, and against the reference implementations' outputs."""

from pathlib import Path

import numpy as np
import pytest

from blender_stchain.evaluation.metrics.actionbench import actionbench_scores, protocol
from blender_stchain.evaluation.metrics.camera import camera_errors, rotation_angle_deg, umeyama
from blender_stchain.evaluation.metrics.chamfer import chamfer_score, motion_chamfer
from blender_stchain.evaluation.metrics.icp import canonical_rotations, gradient_icp
from blender_stchain.evaluation.metrics.sampling import subsample, surface_points, synchronized_points, tracked_points
from blender_stchain.evaluation.metrics.tracks import pair_queries, tapvid_metrics

REF = np.load(Path(__file__).parent / "fixtures" / "actionbench_reference.npz")


def grid(n=6, spacing=1.0):
    g = np.arange(n) * spacing
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


def rot_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


# ------------------------------------------------------------------ ActionBench pieces vs the reference


def test_surface_sampling_draws_trimesh_stream():
    for i in range(2):
        got = surface_points(REF["vertices"], REF["faces"], 128, 44 + i)
        np.testing.assert_allclose(got, REF["trimesh_samples"][i], atol=1e-12)


def test_chamfer_matches_actionbench_reference():
    assert chamfer_score(REF["pred"], REF["gt"], n=500, seed=44) == pytest.approx(float(REF["cd_n500"]), rel=1e-6)
    assert chamfer_score(REF["pred"], REF["gt"], n=10_000, seed=44) == pytest.approx(float(REF["cd_all"]), rel=1e-6)
    assert motion_chamfer(REF["preds"], REF["gts"]) == pytest.approx(float(REF["cd_motion"]), rel=1e-6)


def test_canonical_rotations_are_the_references_24_starts():
    R = canonical_rotations().astype(np.float64)
    assert R.shape == (24, 3, 3)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-6)
    assert np.allclose(np.abs(np.round(R)), np.abs(R), atol=1e-6)  # entries 0 / +-1
    # the reference's angle lists hit gimbal lock at +-90 degrees elevation: starts 17 and 20, 18 and 23
    # coincide, so 22 orientations are distinct (kept as they are: the ICP picks the best of all 24)
    assert len({tuple(np.round(r).astype(int).ravel()) for r in R}) == 22
    np.testing.assert_allclose(R[17], R[20], atol=1e-6)
    np.testing.assert_allclose(R[18], R[23], atol=1e-6)


# ------------------------------------------------------------------ known answers


def test_chamfer_identical_is_zero_and_offset_is_twice_the_offset():
    g = grid()
    assert chamfer_score(g, g) == 0.0
    assert chamfer_score(g + [0.1, 0, 0], g) == pytest.approx(0.2)  # 0.1 each way, spacing 1 keeps pairs
    assert chamfer_score(g * 1.0, g + [0, 0.05, 0], n=50, seed=3) == pytest.approx(0.1)


def test_motion_chamfer_one_frame_time_shift_of_uniform_motion():
    base, v = grid(), np.array([0.1, 0.0, 0.0])
    gts = np.stack([base + t * v for t in range(4)])
    preds = np.stack([base + (t + 1) * v for t in range(4)])  # one frame ahead
    assert motion_chamfer(gts, gts) == 0.0
    assert motion_chamfer(preds, gts) == pytest.approx(0.2)  # |v| per point and frame, both directions


def test_motion_chamfer_growing_offset_is_its_time_mean():
    base = grid()
    gts = np.stack([base] * 4)
    preds = np.stack([base + [0.1 * t, 0, 0] for t in range(4)])  # frame 0 exact: pairs are the identity
    assert motion_chamfer(preds, gts) == pytest.approx(2 * np.mean([0, 0.1, 0.2, 0.3]))


def test_icp_recovers_a_rotated_scaled_shifted_copy():
    pts = surface_points(REF["vertices"], REF["faces"], 300, 1)
    R, s, t = rot_z(100.0), 1.3, np.array([0.2, -0.1, 0.05])
    moved = (pts @ R.T) * s + t  # the "prediction": the GT in another pose and size
    a = gradient_icp(moved, pts)
    back = a.apply(moved)
    diag = np.linalg.norm(pts.max(0) - pts.min(0))
    assert np.linalg.norm(back - pts, axis=1).mean() < 0.01 * diag
    assert chamfer_score(back, pts) < 0.2 * chamfer_score(moved, pts)


def test_actionbench_scores_are_pose_and_scale_free():
    """A turned, scaled, shifted copy of the GT mesh scores like the GT mesh itself (the sampling floor).

    Within the reach of the reference ICP (Adam, lr 0.01, 200 steps: about a unit of translation,
    any of the 24 axis-aligned starts plus a few tens of degrees): both sides are normalised objects."""
    V = np.stack([REF["vertices"], REF["vertices"] * [1.0, 1.0, 1.3]])
    F = REF["faces"]
    gt = tracked_points(V, F, 3000, seed=5)
    kw = dict(n_pts_icp=300, n_pts_chamfer=3000, icp_iterations=150)
    floor = actionbench_scores(gt, V, F, **kw)
    moved = actionbench_scores(gt, (V @ rot_z(100).T) * 0.8 + [0.1, -0.05, 0.0], F, **kw)
    for k in ("cd_3d", "cd_4d", "cd_m"):
        assert moved[k] < 1.2 * floor[k] + 0.005, (k, moved[k], floor[k])
    still = actionbench_scores(gt, np.stack([V[0], V[0]]), F, **kw)  # misses frame 1's stretch:
    assert still["cd_3d"] < 1.2 * floor["cd_3d"] + 0.005  # per-frame ICP (anisotropic scale) hides it,
    assert still["cd_4d"] > floor["cd_4d"] + 0.02  # the frame-0 alignment of CD-4D does not


def test_synchronized_points_follow_the_topology():
    V0 = REF["vertices"]
    V = np.stack([V0, V0 + [1.0, 0, 0]])
    p = synchronized_points(V, REF["faces"], 500, 44)
    np.testing.assert_allclose(p[1] - p[0], np.broadcast_to([1.0, 0, 0], p[0].shape), atol=1e-5)
    np.testing.assert_array_equal(p, synchronized_points(V, REF["faces"], 500, 44))  # seeded


def test_subsample_is_one_permutation_for_all_frames():
    cloud = np.arange(2 * 10 * 3).reshape(2, 10, 3)
    sub = subsample(cloud, 4, 44)
    idx = np.random.RandomState(44).permutation(10)[:4]
    np.testing.assert_array_equal(sub, cloud[:, idx])
    assert subsample(cloud, 20, 44) is cloud


def test_protocol_names_reduced_counts():
    assert protocol(n_pts_icp=10_000, n_pts_chamfer=100_000, seed=44, icp_iterations=200) == "actionbench"
    assert protocol(n_pts_icp=300, n_pts_chamfer=100_000) == "reduced (n_pts_icp=300)"


# ------------------------------------------------------------------ TAP-Vid


def _tracks(T=5, L=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(20, 230, (T, L, 2)), np.ones((T, L), bool)


def test_tapvid_perfect_prediction():
    xy, vis = _tracks()
    m = tapvid_metrics(xy, vis, xy, vis, (256, 256))
    assert m["delta_avg"] == m["occlusion_accuracy"] == m["average_jaccard"] == 1.0


def test_tapvid_known_offset():
    xy, vis = _tracks()
    m = tapvid_metrics(xy, vis, xy + [3.0, 0.0], vis, (256, 256))  # 3 px: within 4, 8, 16 only
    assert m["delta_avg"] == pytest.approx(3 / 5)
    assert m["average_jaccard"] == pytest.approx(3 / 5)  # thresholds 1, 2: 0 / (n + n); 4, 8, 16: n / n
    m = tapvid_metrics(xy * 2, vis, xy * 2 + [6.0, 0.0], vis, (512, 512))  # same in a 512 px footage frame
    assert m["delta_avg"] == pytest.approx(3 / 5)


def test_tapvid_occlusion_and_query_frames():
    xy, vis = _tracks(T=4, L=2)
    vis[0, 1] = False  # track 1 is queried at frame 1, so only frames 2, 3 count for it
    pred_vis = vis.copy()
    pred_vis[2, 0] = False  # one wrong occlusion among 3 + 2 evaluated points
    m = tapvid_metrics(xy, vis, xy, pred_vis, (256, 256))
    assert m["occlusion_accuracy"] == pytest.approx(4 / 5)
    assert m["delta_avg"] == 1.0  # positions ignore predicted occlusion
    assert m["average_jaccard"] == pytest.approx(4 / 5)  # TP 4 of 5 GT-visible, no false positive


def test_pair_queries_picks_the_nearest_visible_candidate():
    xy, vis = _tracks(T=2, L=3)
    cands = np.concatenate([xy[0] + 0.5, xy[0] + 0.1])  # candidates 3..5 are nearer but hidden
    hidden = np.array([True] * 3 + [False] * 3)
    ids = pair_queries(xy, vis, lambda t: cands, lambda t: hidden)
    np.testing.assert_array_equal(ids, [0, 1, 2])


# ------------------------------------------------------------------ camera


def _look(eye):
    z = -np.asarray(eye, float) / np.linalg.norm(eye)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, np.cross(z, x), z])
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def _scene(T=6):
    rng = np.random.default_rng(1)
    P0 = rng.normal(size=(40, 3)) * [0.5, 0.3, 0.4]
    P = np.stack([P0 @ rot_z(5 * t).T + [0.05 * t, 0, 0] for t in range(T)])  # the object turns and slides
    w2c = np.stack([_look([4 * np.sin(a), -4 * np.cos(a), 1.0]) for a in np.radians(np.linspace(0, 30, T))])
    K = np.array([[300.0, 0, 128], [0, 300.0, 128], [0, 0, 1]])
    xy = np.einsum("ij,tnj->tni", K, np.einsum("tij,tnj->tni", w2c[:, :3, :3], P) + w2c[:, None, :3, 3])
    return K, w2c, P, xy[..., :2] / xy[..., 2:], np.ones(P.shape[:2], bool)


def _similar(w2c, P, s, R, t):
    """The same images from another world: points X -> s R X + t, cameras adjusted to match."""
    S = np.eye(4)
    S[:3, :3], S[:3, 3] = s * R, t
    cams = w2c @ np.linalg.inv(S)
    cams[:, :3] *= s  # rescale rows so the rotation part is orthonormal again (same image)
    return cams, s * P @ R.T + t


def test_umeyama_recovers_a_similarity():
    P = np.random.default_rng(0).normal(size=(30, 3))
    s, R, t = umeyama(P, 2.5 * P @ rot_z(40).T + [1, 2, 3])
    assert s == pytest.approx(2.5) and rotation_angle_deg(R, rot_z(40)) < 1e-4
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-9)


def test_camera_errors_zero_for_the_truth_and_for_a_similar_world():
    K, w2c, P, xy, vis = _scene()
    m = camera_errors(K, w2c, P, K, w2c, P, xy, vis)
    assert m["focal_error"] == 0 and m["rotation_deg"] < 1e-5 and m["centre_error"] < 1e-9 and m["reprojection_px"] < 1e-9
    cams, Q = _similar(w2c, P, 0.4, rot_z(70), np.array([3.0, -1.0, 2.0]))
    m = camera_errors(K, cams, Q, K, w2c, P, xy, vis)
    assert m["rotation_deg"] < 1e-5 and m["centre_error"] < 1e-9 and m["reprojection_px"] < 1e-9
    assert m["similarity_scale"] == pytest.approx(1 / 0.4)


def test_camera_errors_ignore_who_moves():
    """"Camera moves" (object still, its motion in the camera) scores as the GT's "object moves"."""
    K, w2c, P, xy, vis = _scene()
    still = np.stack([P[0]] * len(P))
    G = np.tile(np.eye(4), (len(P), 1, 1))
    for t in range(len(P)):
        G[t, :3, :3] = rot_z(5 * t)
        G[t, :3, 3] = [0.05 * t, 0, 0]
    m = camera_errors(K, w2c @ G, still, K, w2c, P, xy, vis)
    assert m["rotation_deg"] < 1e-5 and m["centre_error"] < 1e-9 and m["reprojection_px"] < 1e-9


def test_camera_errors_known_focal_and_rotation():
    K, w2c, P, xy, vis = _scene()
    K2 = K.copy()
    K2[0, 0] = K2[1, 1] = 330.0
    assert camera_errors(K2, w2c, P, K, w2c, P, xy, vis)["focal_error"] == pytest.approx(0.1)
    turned = w2c.copy()
    turned[:, :3, :3] = np.einsum("ij,tjk->tik", rot_z(3.0), w2c[:, :3, :3])  # camera rolled 3 degrees
    m = camera_errors(K, turned, P, K, w2c, P, xy, vis)
    assert m["rotation_deg"] == pytest.approx(3.0, abs=1e-6)
    assert m["reprojection_px"] > 1.0
