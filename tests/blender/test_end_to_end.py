"""The generate operator, headless, through the real worker process on real footage with random
``small`` checkpoints: the scene an artist gets, checked number by number, before and after reopening."""

import os
import subprocess

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = [pytest.mark.blender, pytest.mark.slow]  # a real worker run with small weights: minutes

from blender_stchain.bl import entry  # noqa: E402
from blender_stchain.contracts.blender_camera import OBJECT_TO_BLENDER  # noqa: E402
from blender_stchain.contracts.result import load_result  # noqa: E402
from tests.blender.workers import WORKER_PYTHON  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402

QUICK = ["anchor_steps=4", "grid_resolution=64", "coarse_resolution=32", "face_budget=3000", "landmarks=96",
         "candidate_resolution=48"]


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """Made by the worker's interpreter (the one with torch), exactly as a user would."""
    root = tmp_path_factory.mktemp("weights") / "small"
    subprocess.run([WORKER_PYTHON, "-m", "blender_stchain", "weights", "make-random", str(root), "--size", "small"],
                   cwd=REPO, check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def generated(small_weights, tmp_path_factory):
    os.environ["STCHAIN_WORKER_PYTHON"] = WORKER_PYTHON
    bpy.ops.wm.read_factory_settings(use_empty=True)
    out = tmp_path_factory.mktemp("scene") / "camel.blend"
    args = ["--footage", str(DATA / "rgba_frames/davis_camel"), "--frames", "2:13", "--out", str(out),
            "--weights", str(small_weights), "--allow-random-weights", "--preset", "fast"]
    args += [x for s in QUICK for x in ("--set", s)]
    assert entry.main(args) == 0
    return out


def evaluated(ob, scene, frame):
    scene.frame_set(frame)
    mesh = ob.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def project(scene, cam, points):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    W, H = scene.render.resolution_x, scene.render.resolution_y
    return np.array([[(v := world_to_camera_view(scene, cam, Vector(p))).x * W, (1 - v.y) * H] for p in points])


def check_scene(result_path):
    scene = bpy.context.scene
    ob = bpy.data.objects["4D Mesh"]
    r = load_result(result_path)
    frames = list(r.frame_numbers)
    assert frames == list(range(2, 14)) and (scene.frame_start, scene.frame_end) == (2, 13)
    assert (scene.render.resolution_x, scene.render.resolution_y) == tuple(int(v) for v in r.image_size)
    keys = ob.data.shape_keys.key_blocks
    assert len(keys) == 1 + len(frames)
    errors = []
    for i, f in enumerate(frames):
        scene.frame_set(f)
        assert sum(k.value > 0 for k in keys[1:]) == 1 and keys[1 + i].value == 1.0
        world = np.asarray(ob.matrix_world)
        co = evaluated(ob, scene, f)
        np.testing.assert_allclose(co, r.vertices[i], atol=1e-6)
        ids = np.flatnonzero(r.track_visible[i])
        lm = r.vertices[i][r.track_vertex_ids[ids]]
        pts = (np.c_[lm, np.ones(len(lm))] @ world.T)[:, :3]
        errors.append(np.abs(project(scene, scene.camera, pts) - r.tracks_2d[i][ids]).max())
    assert np.allclose(np.asarray(ob.matrix_world)[:3, :3], OBJECT_TO_BLENDER, atol=1e-6)
    assert scene.camera.data.background_images[0].clip is not None
    assert scene.render.fps > 0
    return errors


def test_operator_through_the_worker_writes_the_scene(generated):
    bpy.ops.wm.open_mainfile(filepath=str(generated))
    meta = bpy.data.objects["4D Mesh"]["stchain"]
    result_path = __import__("json").loads(meta)["result"]
    errors = check_scene(result_path)
    print(f"tracks reprojection error over {len(errors)} frames: max {max(errors):.4f} px")
    assert len(errors) == 12 and max(errors) < 0.5
