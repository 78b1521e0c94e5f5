"""Camera solve on synthetic footage of a real animated mesh, presentations and 2D tracks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from blender_stchain.engine import camera
from tests.engine.camera_scenes import (
    centres,
    look_at,
    octopus,
    pinhole,
    rotation_error_deg,
    scene,
)


def errors(sol, s):
    rot = rotation_error_deg(sol.world_to_camera[:, :3, :3], s.w2c[:, :3, :3])
    centre = np.linalg.norm(centres(sol.world_to_camera) - centres(s.w2c), axis=1) / s.distance
    focal = sol.K[0, 0] / s.K[0, 0] - 1
    clean = np.linalg.norm(camera.project(sol.K, sol.world_to_camera, s.points3d) - s.clean2d, axis=-1)
    return rot, centre, focal, clean


@pytest.fixture(scope="module", params=["static", "orbit"])
def solved(request):
    s = scene(request.param, matches=1000)  # tracked vertices give ~1000s of matches
    return request.param, s, camera.solve(s.points3d, s.points2d, s.weights, s.image_size)


def test_solve_meets_accuracy(solved):
    kind, s, sol = solved
    rot, centre, focal, clean = errors(sol, s)
    print(
        f"\n{kind}: focal {sol.K[0, 0]:.1f} px (truth {s.K[0, 0]:.1f}, {100 * focal:+.2f}%), "
        f"median reprojection {np.median(sol.reprojection_error_px):.3f} px (vs noise-free truth "
        f"{np.median(clean):.3f} px), rotation max {rot.max():.3f} deg, centre max "
        f"{100 * centre.max():.3f}% of distance, inliers {sol.inliers.min()}-{sol.inliers.max()} of "
        f"{s.points2d.shape[1]}"
    )
    assert sol.K.shape == (3, 3) and sol.world_to_camera.shape == (16, 4, 4)
    assert np.median(sol.reprojection_error_px) < 1.5
    assert np.median(clean) < 1.5
    assert abs(focal) < 0.02
    assert rot.max() < 0.5
    assert centre.max() < 0.015
    assert np.allclose(sol.K[:2, 2], np.array(s.image_size) / 2)
    assert sol.warnings == []
    # roughly the 80% that are not outliers, within 4 px
    assert (sol.inliers > 0.7 * s.points2d.shape[1]).all()


def test_fixed_focal_is_kept():
    s = scene("orbit", seed=3)
    sol = camera.solve(s.points3d, s.points2d, s.weights, s.image_size, focal_px=1.1 * s.K[0, 0], smoothness=0.0)
    assert sol.K[0, 0] == pytest.approx(1.1 * s.K[0, 0])
    s_true = camera.solve(s.points3d, s.points2d, s.weights, s.image_size, focal_px=s.K[0, 0])
    rot, centre, _, _ = errors(s_true, s)
    print(f"\nfixed true focal: rotation max {rot.max():.3f} deg, centre max {100 * centre.max():.3f}%")
    assert rot.max() < 0.5 and centre.max() < 0.015


def test_too_few_matches_warns_and_interpolates():
    s = scene("orbit", seed=1)
    w = s.weights.copy()
    w[7, 4:] = 0.0  # frame 7 keeps 4 matches
    w[15, :] = 0.0  # the last frame keeps none
    sol = camera.solve(s.points3d, s.points2d, w, s.image_size)
    rot, centre, _, _ = errors(sol, s)
    print(f"\nwarnings: {sol.warnings}\nframe 7: rotation {rot[7]:.3f} deg, centre {100 * centre[7]:.3f}%;"
          f" frame 15 (copied from 14): rotation {rot[15]:.3f} deg")
    assert len(sol.warnings) == 1 and "[7, 15]" in sol.warnings[0] and "fewer than 6" in sol.warnings[0]
    assert np.isfinite(sol.world_to_camera).all()
    assert rot[7] < 0.5 and centre[7] < 0.015  # halfway on a steady orbit: interpolation is nearly exact
    assert rot[15] < 7.0  # held at frame 14's pose: one orbit step (6 deg) away
    assert np.isnan(sol.reprojection_error_px[15]) and sol.inliers[15] == 0


def test_coplanar_frame_warns_and_is_still_solved():
    s = scene("orbit", seed=2)
    X = s.points3d.copy()
    X[5, :, 1] = X[5, :, 1].mean()  # frame 5: all points on one plane
    clean = pinhole(s.K, s.w2c[5], X[5])
    uv = s.points2d.copy()
    uv[5] = clean + np.random.default_rng(0).normal(0, 1, clean.shape)
    sol = camera.solve(X, uv, s.weights, s.image_size)
    rot, centre, _, _ = errors(sol, s)
    print(f"\nwarnings: {sol.warnings}\ncoplanar frame 5: rotation {rot[5]:.3f} deg, centre {100 * centre[5]:.3f}%")
    assert any("coplanar" in m and "[5]" in m for m in sol.warnings)
    assert rot[5] < 0.5 and centre[5] < 0.015


def test_everything_degenerate_does_not_crash():
    s = scene("static", matches=40)
    X = s.points3d.copy()
    X[..., 2] = 0.0
    sol = camera.solve(X, s.points2d, s.weights, s.image_size)
    assert any("no frame has a linear pose" in m for m in sol.warnings)
    assert np.isfinite(sol.world_to_camera).all() and np.isfinite(sol.K).all()
    none = camera.solve(X, s.points2d, np.zeros_like(s.weights), s.image_size)
    assert np.isfinite(none.world_to_camera).all() and (none.inliers == 0).all()
    assert "fewer than 6" in none.warnings[0]


def test_bad_arguments_are_clear():
    s = scene("static", matches=20)
    with pytest.raises(ValueError, match="unknown camera setting"):
        camera.solve(s.points3d, s.points2d, s.weights, s.image_size, smoothnes=1.0)
    with pytest.raises(ValueError, match=r"points3d \(T,M,3\)"):
        camera.solve(s.points3d[0], s.points2d, s.weights, s.image_size)


def random_rigid(rng, T):
    axes = rng.normal(size=(T, 3))
    R = camera.rodrigues(axes / np.linalg.norm(axes, axis=1, keepdims=True) * rng.uniform(0, 2.5, (T, 1)))
    return camera.rigid(R, rng.normal(size=(T, 3)))


def apply(M, V):
    return V @ np.swapaxes(M[..., :3, :3], -1, -2) + M[..., None, :3, 3]


def test_object_motion_recovers_rigid_motion():
    verts, _ = octopus()
    M = random_rigid(np.random.default_rng(0), len(verts))
    rigid_only = camera.object_motion(verts[0], apply(M, verts[0][None]))
    assert np.abs(rigid_only.matrices - M).max() < 1e-9 and rigid_only.rms.max() < 1e-9
    # with deformation: the motion of a rigidly moved deforming clip is M composed with its own
    own = camera.object_motion(verts[0], verts)
    moved = camera.object_motion(verts[0], apply(M, verts))
    print(f"\noctopus deformation left after the rigid fit: rms {own.rms.max():.4f} (bbox diagonal ~3.0)")
    assert np.abs(moved.matrices - M @ own.matrices).max() < 1e-8
    assert np.allclose(moved.rms, own.rms)


def test_camera_moves_keeps_every_image_and_stills_the_object():
    s = scene("orbit", matches=50)
    verts, _ = octopus()
    M = random_rigid(np.random.default_rng(1), len(verts))
    V = apply(M, verts)
    sol = camera.CameraSolution(s.K, s.w2c @ np.linalg.inv(M), np.zeros(len(V)), np.zeros(len(V), int), s.image_size)
    motion = camera.object_motion(V[0], V)
    same, V1 = camera.present(sol, "object_moves", motion, V)
    assert same is sol and V1 is V
    moved, still = camera.present(sol, "camera_moves", motion, V)
    before = camera.project(sol.K, sol.world_to_camera, V)
    after = camera.project(moved.K, moved.world_to_camera, still)
    drift = camera.object_motion(V[0], still)
    residual = np.abs(drift.matrices[:, :3, :3] - np.eye(3)).max()
    print(f"\ncamera_moves: max image change {np.nanmax(np.abs(after - before)):.2e} px, residual rigid "
          f"rotation |R - I| {residual:.2e}")
    assert np.nanmax(np.abs(after - before)) < 1e-6
    assert residual < 1e-9
    assert np.abs(drift.matrices[:, :3, 3]).max() < 1e-9
    with pytest.raises(ValueError, match="camera mode"):
        camera.present(sol, "orbit", motion, V)


def uv_sphere(n=24):
    th, ph = np.meshgrid(np.linspace(0, np.pi, n + 1)[1:-1], np.linspace(0, 2 * np.pi, 2 * n, endpoint=False), indexing="ij")
    V = np.concatenate([[[0, 0, 1]], np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3), [[0, 0, -1]]])
    rings, seg = n - 1, 2 * n
    idx = lambda r, s: 1 + r * seg + s % seg  # noqa: E731
    F = [[0, idx(0, s), idx(0, s + 1)] for s in range(seg)]
    F += [f for r in range(rings - 1) for s in range(seg) for f in ([idx(r, s), idx(r + 1, s), idx(r + 1, s + 1)], [idx(r, s), idx(r + 1, s + 1), idx(r, s + 1)])]
    F += [[len(V) - 1, idx(rings - 1, s + 1), idx(rings - 1, s)] for s in range(seg)]
    return V, np.array(F)


def test_tracks_visibility_on_a_sphere_matches_facing():
    V, F = uv_sphere()
    C = np.array([0.3, 0.8, 4.0])
    w2c = look_at(C, np.zeros(3))[None]
    K = np.array([[800.0, 0, 400], [0, 800, 300], [0, 0, 1]])
    ids = np.arange(len(V))
    tracks, visible = camera.tracks_2d(V[None], F, ids, K, w2c, (800, 600))
    facing = np.sum(V * (C - V), 1) / np.linalg.norm(C - V, axis=1)  # cos between normal and view ray
    clear = np.abs(facing) > 0.1  # leave the grazing band out: the polygon is not the sphere there
    agree = (visible[0].astype(bool) == (facing > 0))[clear].mean()
    print(f"\nsphere: {visible.sum()} of {len(V)} visible, agreement with facing test {100 * agree:.1f}%")
    assert agree == 1.0
    assert tracks.dtype == np.float32 and visible.dtype == np.uint8
    assert np.abs(tracks[0] - pinhole(K, w2c[0], V)).max() < 1e-3


def test_tracks_hidden_outside_and_behind():
    # a front quad at z=2 hides the middle of a back quad at z=4; camera at the origin looking down +z
    quad = lambda z, s: np.array([[-s, -s, z], [s, -s, z], [s, s, z], [-s, s, z]])  # noqa: E731
    grid = np.stack(np.meshgrid(np.linspace(-2, 2, 9), np.linspace(-2, 2, 9)), -1).reshape(-1, 2)
    back = np.concatenate([grid, np.full((len(grid), 1), 4.0)], 1)
    V = np.concatenate([quad(2.0, 0.5), back, [[0.0, 0.0, -1.0], [50.0, 0.0, 4.0]]])
    F = np.array([[0, 1, 2], [0, 2, 3]])
    K = np.array([[500.0, 0, 320], [0, 500, 320], [0, 0, 1]])
    ids = np.arange(4, len(V))
    _, vis = camera.tracks_2d(V[None], F, ids, K, np.eye(4)[None], (640, 640))
    shadow = (np.abs(back[:, 0]) < 1.0) & (np.abs(back[:, 1]) < 1.0)  # the quad's shadow at z=4 is |x|,|y| < 1
    edge = np.isclose(np.abs(back[:, :2]), 1.0).any(1)
    assert (vis[0, : len(back)][shadow & ~edge] == 0).all()
    assert (vis[0, : len(back)][~shadow & ~edge] == 1).all()
    assert vis[0, -2] == 0 and vis[0, -1] == 0  # behind the camera, outside the image
    _, front = camera.tracks_2d(V[None], F, np.arange(4), K, np.eye(4)[None], (640, 640))
    assert (front == 1).all()  # a face never hides its own corners


def test_mask_distance_field_is_exact_near_the_outline():
    """Signed: scipy's exact distance to the other side's nearest pixel centre, less half a pixel."""
    from scipy.ndimage import distance_transform_edt

    yy, xx = np.mgrid[:90, :120]
    mask = ((xx - 50) ** 2 / 30**2 + (yy - 40) ** 2 / 20**2 < 1) | ((xx > 85) & (yy > 60))
    field = camera.mask_distance_field(mask, max_distance=40)
    truth = np.clip(np.where(mask, 0.5 - distance_transform_edt(mask), distance_transform_edt(~mask) - 0.5), -40, 40)
    print(f"\ndistance field: max |ours - scipy| {np.abs(field - truth).max():.2e} px")
    assert np.abs(field - truth).max() < 1e-4
    assert field[40, 50] < 0 < field[0, 0]  # inside negative, outside positive


def test_a_low_resolution_mask_field_puts_the_outline_where_the_mask_has_it():
    """A disc of radius 300 px in 1080p footage on the stage's 256-cell field (7.5 px a cell): the
    field interpolated along rays from the centre crosses zero at the radius on average (within a
    pixel; an outline at edge-cell centres sits half a cell, 3.75 px, inside) and within half a cell
    on every ray (the field samples the mask once a cell)."""
    from blender_stchain.engine.camera.refine import _sample
    from blender_stchain.engine.camera.silhouette import mask_fields

    yy, xx = np.mgrid[:1080, :1920] + 0.5
    disc = (xx - 960) ** 2 + (yy - 540) ** 2 < 300**2
    fields, scale = mask_fields([disc], (1920, 1080))
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radii = np.linspace(280, 320, 401)
    pix = np.stack([960 + np.cos(angles)[:, None] * radii, 540 + np.sin(angles)[:, None] * radii], -1)
    d, _ = _sample(fields, pix.reshape(1, -1, 2), scale)
    crossing = radii[np.abs(d.reshape(len(angles), -1)).argmin(1)]
    print(f"\noutline on a {scale:.1f} px/cell field: radius {crossing.mean():.2f} px (mean), worst {np.abs(crossing - 300).max():.2f} px off")
    assert abs(crossing.mean() - 300) < 1.0 and np.abs(crossing - 300).max() <= scale / 2


def convex_silhouette(s, verts):
    """Boundary vertices (the 2D convex hull of the true projection) and a filled hull mask."""
    from scipy.spatial import ConvexHull

    W, H = s.image_size
    centres_px = np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5), -1)
    points, fields = [], []
    for t in range(len(verts)):
        uv = pinhole(s.K, s.w2c[t], verts[t])
        hull = ConvexHull(uv)
        ids = hull.vertices[np.resize(np.arange(len(hull.vertices)), 40)]
        inside = np.ones((H, W), bool)
        for a, b, c0 in hull.equations:  # a x + b y + c <= 0 inside
            inside &= centres_px[..., 0] * a + centres_px[..., 1] * b + c0 <= 0
        points.append(verts[t, ids])
        fields.append(camera.mask_distance_field(inside))
    return camera.Silhouette(np.stack(points), np.stack(fields), weight=1.0)


def test_silhouette_term_improves_a_weak_solve():
    s = scene("orbit", matches=10, image_size=(480, 270), noise=3.0, outliers=0.0, seed=5)
    verts, _ = octopus()
    sil = convex_silhouette(s, verts[:, ::10])
    plain = camera.solve(s.points3d, s.points2d, s.weights, s.image_size, focal_px=s.K[0, 0])
    helped = camera.solve(s.points3d, s.points2d, s.weights, s.image_size, focal_px=s.K[0, 0], silhouette=sil)
    r0, c0, _, _ = errors(plain, s)
    r1, c1, _, _ = errors(helped, s)
    print(f"\nsilhouette: mean rotation error {r0.mean():.3f} -> {r1.mean():.3f} deg, mean centre error "
          f"{100 * c0.mean():.3f}% -> {100 * c1.mean():.3f}%")
    assert r1.mean() < 0.8 * r0.mean() and c1.mean() < 0.8 * c0.mean()
    with pytest.raises(ValueError, match="silhouette needs"):
        camera.solve(s.points3d, s.points2d, s.weights, (100, 100), silhouette=sil)


def test_blender_conversion_refuses_mirrors_and_skew():
    from blender_stchain.contracts.blender_camera import (
        blender_camera,
        camera_matrix_world,
    )

    actionmesh_npy_map = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # det -1
    assert np.isclose(np.linalg.det(actionmesh_npy_map), -1.0)
    with pytest.raises(ValueError, match="proper rotation"):
        camera_matrix_world(np.eye(4)[None], actionmesh_npy_map)
    with pytest.raises(ValueError, match="skewed"):
        blender_camera(np.array([[500.0, 3.0, 320], [0, 500, 240], [0, 0, 1]]), np.eye(4), (640, 480))
    with pytest.raises(ValueError, match="sensor_fit"):
        blender_camera(np.eye(3), np.eye(4), (640, 480), sensor_fit="FILL")


def brute_force_visible(V, F, ids, centre):
    """Independent check: Moller-Trumbore ray casts from the camera centre to each landmark."""
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    e1, e2 = b - a, c - a
    out = []
    for i in ids:
        d = V[i] - centre  # ray length 1 reaches the landmark
        h = np.cross(d, e2)
        det = np.einsum("fk,fk->f", e1, h)
        ok = np.abs(det) > 1e-15
        inv = 1 / np.where(ok, det, 1)
        s = centre - a
        u = np.einsum("fk,fk->f", s, h) * inv
        qv = np.cross(s, e1)
        v = (qv @ d) * inv
        t = np.einsum("fk,fk->f", e2, qv) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6) & (t < 1 - 1e-3)
        hit &= ~(F == i).any(1)
        out.append(not hit.any())
    return np.array(out)


def test_tracks_visibility_on_the_octopus_matches_brute_force_ray_casts():
    verts, faces = octopus()
    s = scene("orbit", matches=10)
    ids = np.random.default_rng(0).choice(verts.shape[1], 96, replace=False)
    frames = [0, 9]
    _, vis = camera.tracks_2d(verts[frames], faces, ids, s.K, s.w2c[frames], s.image_size)
    agree = [np.mean(vis[k].astype(bool) == brute_force_visible(verts[f], faces, ids, centres(s.w2c)[f]))
             for k, f in enumerate(frames)]
    print(f"\noctopus: visible {vis.mean(1)}, agreement with brute-force ray casts {agree}")
    assert min(agree) >= 0.98 and 0.2 < vis.mean() < 0.8


def test_occlusion_by_face_subsets_equals_every_face_at_once(monkeypatch):
    """The subset-first occlusion test, the pair chunking and a second thread change the cost, never the answer: on
    the octopus plus a crumpled many-layer sheet (most landmarks hidden several times over) the
    visibility equals one pass over every face, in one chunk."""
    from blender_stchain.engine.camera import tracks

    verts, faces = octopus()
    s = scene("orbit", matches=10)
    rng = np.random.default_rng(3)
    u, v = np.meshgrid(np.linspace(-1.5, 1.5, 40), np.linspace(-1.5, 1.5, 40))
    sheets = [np.stack([u, v, 0.1 * k + 0.05 * rng.standard_normal(u.shape)], -1).reshape(-1, 3) for k in range(6)]
    grid = np.arange(40 * 40).reshape(40, 40)
    quad = np.concatenate([np.stack([grid[:-1, :-1], grid[1:, :-1], grid[1:, 1:]], -1).reshape(-1, 3),
                           np.stack([grid[:-1, :-1], grid[1:, 1:], grid[:-1, 1:]], -1).reshape(-1, 3)])
    n = verts.shape[1]
    F = np.concatenate([faces] + [quad + n + k * 1600 for k in range(6)])
    frames = [0, 4, 9]
    V = np.concatenate([verts[frames], np.broadcast_to(np.concatenate(sheets), (3, 9600, 3))], 1)
    ids = rng.choice(V.shape[1], 400, replace=False)
    _, fast = camera.tracks_2d(V, F, ids, s.K, s.w2c[frames], s.image_size)
    with ThreadPoolExecutor(1) as pool:  # every other block of frames on a second thread
        monkeypatch.setattr(tracks, "FACE_FRAMES", 1)  # one frame a block
        _, pooled = camera.tracks_2d(V, F, ids, s.K, s.w2c[frames], s.image_size, pool=pool)
    assert (pooled == fast).all()
    monkeypatch.setattr(tracks, "SUBSET_STEPS", (1,))
    monkeypatch.setattr(tracks, "PAIR_CHUNK", 1 << 40)
    _, whole = camera.tracks_2d(V, F, ids, s.K, s.w2c[frames], s.image_size)
    print(f"\nmany layers: {fast.mean():.2f} visible")
    assert 0.05 < fast.mean() < 0.6
    assert (fast == whole).all()


def test_absurd_cameras_are_told_apart_from_merely_doubtful_ones():
    """``absurd`` (no field of view a lens has, or non-finite) is what makes the camera stage skip the
    visibility reweighting; a camera that is only doubtful (plausible would refuse it for its
    matches) still counts as a camera there."""
    from blender_stchain.engine.camera.solution import CameraSolution, absurd

    s = scene("orbit", matches=10)
    T = len(s.w2c)

    def sol(K, w2c=s.w2c, error=1.0):
        return CameraSolution(K, w2c, np.full(T, error), np.zeros(T, int), s.image_size)

    assert absurd(sol(s.K)) is None
    assert "field of view" in absurd(sol(np.diag([1.1e6, 1.1e6, 1.0]) + s.K * [[0, 0, 1], [0, 0, 1], [0, 0, 0]]))
    assert "field of view" in absurd(sol(np.diag([0.5, 0.5, 1.0])))
    assert "converge" in absurd(sol(s.K, np.where(np.eye(4, dtype=bool), np.nan, s.w2c)))
    assert camera.plausible(sol(s.K)) is None
    doubtful = sol(s.K, error=np.nan)  # no frame has consistent matches
    assert "consistent" in camera.plausible(doubtful) and absurd(doubtful) is None
