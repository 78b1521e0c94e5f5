"""Scene writer on results made from the real animated GLB meshes, in real bpy."""

import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_stchain.bl import scene_writer as sw  # noqa: E402
from blender_stchain.bl.pointcache import read_pc2  # noqa: E402
from tests.blender.conftest import data_snapshot  # noqa: E402
from tests.blender.synth import result_from_npz  # noqa: E402
from tests.conftest import DATA  # noqa: E402

BEAR = DATA / "videos" / "bear.mp4"


@pytest.fixture(scope="module")
def result():
    return result_from_npz(DATA / "animated_glb" / "mushroom.npz", first_frame=5, size=(854, 480), tracks=12)


def evaluated(ob):
    me = ob.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def active_keys(ob):
    return [kb.name for kb in ob.data.shape_keys.key_blocks[1:] if kb.value > 0.0]


def reprojection_px(scene, cam, ob, pts3d, W, H):
    out = []
    for p in pts3d:
        c = world_to_camera_view(scene, cam, ob.matrix_world @ Vector(p.tolist()))
        out.append((c.x * W, (1.0 - c.y) * H))
    return np.array(out)


def check_scene(scene, result, check_tracks=True):
    """Everything the writer promises, checked frame by frame; returns the worst errors."""
    ob, cam = bpy.data.objects["4D Mesh"], scene.camera
    W, H = (int(x) for x in result.image_size)
    assert cam is bpy.data.objects["4D Mesh camera"]
    assert (scene.frame_start, scene.frame_end) == (5, 20)
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (W, H, 100)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0)
    bg = cam.data.background_images
    assert cam.data.show_background_images and len(bg) == 1 and bg[0].source == "MOVIE_CLIP"
    assert os.path.realpath(bpy.path.abspath(bg[0].clip.filepath)) == str(BEAR.resolve())
    keys = ob.data.shape_keys.key_blocks
    assert [k.name for k in keys] == ["Basis"] + [f"frame_{f:04d}" for f in range(5, 21)]
    err_co = err_px = 0.0
    for frame in range(3, 23):  # also before and after the range
        scene.frame_set(frame)
        t = min(max(frame - 5, 0), 15)
        assert active_keys(ob) == [f"frame_{t + 5:04d}"], frame
        err_co = max(err_co, float(np.abs(evaluated(ob) - result.vertices[t]).max()))
        if check_tracks and 5 <= frame <= 20:
            ids = np.linspace(0, result.vertices.shape[1] - 1, 12).astype(int)
            px = reprojection_px(scene, cam, ob, result.vertices[t, ids], W, H)
            err_px = max(err_px, float(np.abs(px - result.tracks_2d[t]).max()))
    return err_co, err_px


def test_shape_keys_camera_scene(scene, result):
    written = sw.apply(result, scene, sw.WriteOptions(fps=30.0, footage=str(BEAR), metadata={"method": "chain"}))
    err_co, err_px = check_scene(scene, result)
    print(f"max evaluated-coordinate error {err_co:.3g}, max reprojection error {err_px:.4f} px")
    assert err_co <= 1e-6 and err_px < 0.5
    ob = bpy.data.objects[written["mesh"]]
    assert '"method": "chain"' in ob["stchain"] and list(ob["stchain_frames"]) == [5, 20]
    clip = scene.camera.data.background_images[0].clip
    tracks = clip.tracking.tracks
    assert [t.name for t in tracks] == [f"stchain_{i:04d}" for i in range(12)]
    muted = [m.frame for m in tracks[0].markers if m.mute]
    assert muted == [5 + t for t in range(0, 16, 3)]  # hidden every third frame in the synthetic data
    m = tracks[3].markers.find_frame(9)
    W, H = result.image_size
    assert m.co[0] * W == pytest.approx(result.tracks_2d[4, 3, 0], abs=1e-3)
    assert (1 - m.co[1]) * H == pytest.approx(result.tracks_2d[4, 3, 1], abs=1e-3)


def test_save_reopen_keeps_everything(scene, result, tmp_path):
    sw.apply(result, scene, sw.WriteOptions(fps=30.0, footage=str(BEAR)))
    path = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    err_co, err_px = check_scene(bpy.context.scene, result)
    print(f"after reopen: coordinate error {err_co:.3g}, reprojection {err_px:.4f} px")
    assert err_co <= 1e-6 and err_px < 0.5


def test_rerun_replaces_only_its_own(scene, result):
    user = bpy.data.objects.new("user mesh", bpy.data.meshes.new("user mesh"))
    scene.collection.objects.link(user)
    sw.apply(result, scene, sw.WriteOptions(fps=30.0, footage=str(BEAR)))
    first = data_snapshot()
    sw.apply(result, scene, sw.WriteOptions(fps=30.0, footage=str(BEAR)))
    assert data_snapshot() == first  # same names: old result gone, nothing duplicated
    assert "user mesh" in scene.objects and len(bpy.data.movieclips) == 1
    sw.remove_previous(scene)
    assert sorted(o.name for o in bpy.data.objects) == ["user mesh"]
    assert not bpy.data.actions and not bpy.data.movieclips and not bpy.data.cameras


def test_failure_leaves_scene_unchanged(scene, result):
    sw.apply(result, scene, sw.WriteOptions(fps=30.0))
    before = data_snapshot()
    frame_range = (scene.frame_start, scene.frame_end)
    with pytest.raises(ValueError, match="does not exist"):  # fails after mesh and camera were built
        sw.apply(result, scene, sw.WriteOptions(fps=30.0, clip="missing clip"))
    assert data_snapshot() == before and (scene.frame_start, scene.frame_end) == frame_range


def test_point_cache(scene, result, tmp_path):
    sw.apply(result, scene, sw.WriteOptions(mode="pc2", cache_dir=str(tmp_path), fps=29.97))
    ob = bpy.data.objects["4D Mesh"]
    mod = ob.modifiers["4D Mesh cache"]
    assert mod.type == "MESH_CACHE" and ob.data.shape_keys is None
    np.testing.assert_array_equal(read_pc2(ob["stchain_pc2"]), result.vertices)
    worst = 0.0
    for t in (0, 7, 15):
        scene.frame_set(5 + t)
        worst = max(worst, float(np.abs(evaluated(ob) - result.vertices[t]).max()))
    print(f"PC2 max evaluated error {worst:.3g}")
    assert worst == 0.0
    assert scene.render.fps / scene.render.fps_base == pytest.approx(29.97)


def test_auto_mode_threshold(scene, result):
    size_mb = result.vertices.nbytes / 1e6
    sw.apply(result, scene, sw.WriteOptions(pc2_threshold_mb=size_mb / 2, cache_dir=bpy.app.tempdir or "/tmp"))
    assert "4D Mesh cache" in bpy.data.objects["4D Mesh"].modifiers
    sw.apply(result, scene, sw.WriteOptions(pc2_threshold_mb=size_mb * 2))
    assert bpy.data.objects["4D Mesh"].data.shape_keys is not None
