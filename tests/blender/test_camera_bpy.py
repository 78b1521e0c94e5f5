"""Blender camera from a CameraSolution: Blender's own projection must equal the OpenCV one."""

from __future__ import annotations

import numpy as np
import pytest

from blender_stchain.contracts.blender_camera import (
    OBJECT_TO_BLENDER,
    blender_camera,
    to_blender_world,
)
from blender_stchain.engine.camera import CameraSolution, project
from tests.engine.camera_scenes import look_at, octopus, pinhole

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

pytestmark = pytest.mark.blender

CASES = {
    # name: (W, H, fx, fy, cx, cy, sensor_fit, sensor_width, sensor_height)
    "landscape_auto": (1920, 1080, 1500.0, 1500.0, 960.0, 540.0, "AUTO", 36.0, None),
    "portrait_auto": (1080, 1920, 1700.0, 1700.0, 540.0, 960.0, "AUTO", 36.0, None),
    "landscape_vertical_fit": (1280, 720, 1100.0, 1100.0, 640.0, 360.0, "VERTICAL", 23.76, 15.6),
    "portrait_horizontal_fit": (720, 1280, 900.0, 900.0, 360.0, 640.0, "HORIZONTAL", 22.3, 30.0),
    "portrait_off_centre": (368, 480, 420.0, 420.0, 171.3, 262.9, "AUTO", 36.0, None),
    "landscape_off_centre_vertical": (854, 480, 700.0, 700.0, 440.5, 231.25, "VERTICAL", 36.0, 20.0),
    "non_square_pixels": (1440, 1080, 1200.0, 1000.0, 700.0, 560.0, "AUTO", 36.0, None),
}


def solution(W, H, fx, fy, cx, cy):
    verts, _ = octopus()
    T = 6
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    w2c = []
    for t in range(T):
        a = np.radians(10 + 25 * t)
        C = 7.0 * np.array([np.sin(a), 0.3 + 0.1 * t, np.cos(a)])
        w2c.append(look_at(C, np.array([0.0, 0.1 * t, 0.0])))
    w2c = np.stack(w2c)
    sol = CameraSolution(K, w2c, np.zeros(T), np.zeros(T, int), (W, H))
    return sol, verts[:T, ::400]


@pytest.fixture
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def build_camera(scene, cam_data):
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_fit = cam_data.lens, cam_data.sensor_fit
    data.sensor_width, data.sensor_height = cam_data.sensor_width, cam_data.sensor_height
    data.shift_x, data.shift_y = cam_data.shift_x, cam_data.shift_y
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = cam_data.resolution_x, cam_data.resolution_y, 100
    r.pixel_aspect_x, r.pixel_aspect_y = cam_data.pixel_aspect_x, cam_data.pixel_aspect_y
    obj.rotation_mode = "QUATERNION"
    for f, m in enumerate(cam_data.matrix_world):
        obj.matrix_world = Matrix(m.tolist())
        obj.keyframe_insert("location", frame=f + 1)
        obj.keyframe_insert("rotation_quaternion", frame=f + 1)
    return obj


@pytest.mark.parametrize("case", sorted(CASES))
def test_blender_projection_matches_opencv(scene, case):
    W, H, fx, fy, cx, cy, fit, sw, sh = CASES[case]
    sol, pts = solution(W, H, fx, fy, cx, cy)
    cam_data = blender_camera(sol.K, sol.world_to_camera, sol.image_size, fit, sw, sh)
    obj = build_camera(scene, cam_data)
    expected = project(sol.K, sol.world_to_camera, pts)
    worst = 0.0
    for f in range(len(pts)):
        scene.frame_set(f + 1)
        independent = pinhole(sol.K, sol.world_to_camera[f], pts[f])
        assert np.abs(expected[f] - independent).max() < 1e-9
        world = to_blender_world(pts[f])
        ndc = np.array([world_to_camera_view(scene, obj, Vector(p.tolist()))[:] for p in world])
        got = np.stack([ndc[:, 0] * W, (1 - ndc[:, 1]) * H], -1)
        assert (ndc[:, 2] > 0).all()
        worst = max(worst, np.abs(got - expected[f]).max())
    print(f"{case}: lens {cam_data.lens:.3f} mm fit {fit} shift ({cam_data.shift_x:.4f}, {cam_data.shift_y:.4f}) "
          f"aspect ({cam_data.pixel_aspect_x:.3f}, {cam_data.pixel_aspect_y:.3f}) max |blender - opencv| {worst:.2e} px")
    assert worst < 0.01


def test_axis_map_is_a_rotation_and_camera_uses_it(scene):
    assert np.isclose(np.linalg.det(OBJECT_TO_BLENDER), 1.0)
    assert np.allclose(OBJECT_TO_BLENDER @ OBJECT_TO_BLENDER.T, np.eye(3))
    up = to_blender_world(np.array([0.0, 1.0, 0.0]))
    assert np.allclose(up, [0, 0, 1])  # object y-up becomes Blender z-up
    sol, _ = solution(800, 600, 700.0, 700.0, 400.0, 300.0)
    cam_data = blender_camera(sol.K, sol.world_to_camera, sol.image_size)
    obj = build_camera(scene, cam_data)
    scene.frame_set(1)
    # the Blender camera looks down its local -z at the object centre, and its local +y is up-ish in z
    forward = -np.array(obj.matrix_world.to_3x3().col[2])
    centre = np.array(obj.matrix_world.translation)
    to_target = -centre / np.linalg.norm(centre)
    assert np.linalg.norm(np.cross(forward, to_target)) < 1e-5 and forward @ to_target > 0
    assert np.array(obj.matrix_world.to_3x3().col[1])[2] > 0.9
