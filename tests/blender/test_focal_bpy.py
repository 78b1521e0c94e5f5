"""The lens Blender knows goes into the job (*Use clip's camera*), and the solved focal with its 95%
interval comes back as the panel / Info text."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from blender_stchain.contracts.job import JobSpec
from tests.conftest import DATA

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
from blender_stchain.bl import ops  # noqa: E402

pytestmark = pytest.mark.blender


def test_use_clip_camera_puts_the_clip_lens_into_the_job(registered):
    clip = bpy.data.movieclips.load(str(DATA / "videos" / "bear.mp4"))
    clip.tracking.camera.sensor_width = 23.5  # what a tracking artist sets in Tracking > Camera
    clip.tracking.camera.focal_length = 28.0
    props = registered.stchain
    props.source, props.clip = "CLIP", clip
    op = SimpleNamespace(settings_json="")
    assert ops._settings(op, props, None, None) == {}  # not ticked: the focal is solved
    props.use_clip_camera = True
    settings = ops._settings(op, props, None, None)
    assert settings == {"camera_focal_mm": 28.0, "camera_sensor_mm": pytest.approx(23.5),
                        "camera_focal_source": "clip camera"}
    resolved = JobSpec(footage="f", out="r.safetensors", settings=settings).resolved_settings()
    # the pixels the engine derives equal Blender's own focal in pixels for this clip
    focal_px = resolved.camera_focal_mm / resolved.camera_sensor_mm * clip.size[0]
    assert focal_px == pytest.approx(clip.tracking.camera.focal_length_pixels, rel=1e-5)


def test_focal_text_for_the_panel_and_the_info_report():
    solved = {"camera": {"status": "estimated", "median_error_px": 1.23, "focal_px": 1100.4,
                         "focal_px_interval": [990.2, 1230.0], "focal_source": "solved", "warnings": []}}
    assert ops.focal_text(solved) == "focal 1,100 px, 990-1,230 (solved)"
    assert ops.camera_status(solved) == "solved (median error 1.2 px; focal 1,100 px, 990-1,230 (solved))"
    given = {"camera": {**solved["camera"], "focal_px": 1234.0, "focal_px_interval": None,
                        "focal_source": "clip camera"}}
    assert ops.focal_text(given) == "focal 1,234 px (clip camera)"
    default = {"camera": {"status": "not estimated", "focal_px": 1500.0, "focal_px_interval": None,
                          "warnings": ["camera not estimated (x); using a default front camera"]}}
    assert ops.focal_text(default) == "" and ops.focal_text({}) == ""  # an older result has no focal record


def test_a_poorly_determined_focal_reaches_the_info_report_and_the_panel(registered):
    from blender_stchain.engine.camera import stage

    assert ops.FOCAL_POORLY_DETERMINED == stage.POORLY_DETERMINED  # the text the engine writes
    status = bpy.context.window_manager.stchain_status
    reports = []
    op = SimpleNamespace(report=lambda kind, text: reports.append((kind, text)))
    poor = (f"camera: {stage.POORLY_DETERMINED} (focal 1,100 px, 95% interval 800-1,500): give the lens "
            "(--focal-mm, or Use clip's camera in Blender)")
    ops._keep_warnings(op, status, SimpleNamespace(warnings=["camera: frame(s) 3 have a pose jump", poor]))
    assert reports == [({"WARNING"}, poor)]  # the other warning stays in the panel only
    assert [w.text for w in status.warnings] == ["camera: frame(s) 3 have a pose jump", poor]


def test_the_footage_lens_goes_into_the_job_from_blender(registered, tmp_path):
    """Blender exports frames for the job (no metadata there), so it reads the footage's lens itself."""
    from blender_stchain.bl import footage
    pytest.importorskip("av", reason="the tagged movie is written with PyAV (the Blender-only venvs lack it)")
    from tests.engine.lens_footage import tagged_movie

    movie = tagged_movie(tmp_path / "phone.mov", "26")
    props = registered.stchain
    props.source, props.filepath = "FILE", str(movie)
    src = footage.probe(str(movie))
    settings = ops._settings(SimpleNamespace(settings_json=""), props, None, src)
    # 26 mm on the diagonal of a 36 x 24 mm frame, as mm on a 36 mm sensor across the 160 px width
    assert settings == {"camera_focal_mm": pytest.approx(26 * (160**2 + 90**2) ** 0.5 / (36**2 + 24**2) ** 0.5
                                                         * 36 / 160),
                        "camera_sensor_mm": 36.0, "camera_focal_source": "footage metadata"}
    JobSpec(footage="f", out="r.safetensors", settings=settings).validate()
    for user in ('{"camera_footage_lens": "ignore"}', '{"camera_focal_px": 500}'):
        kept = ops._settings(SimpleNamespace(settings_json=user), props, None, src)
        assert "camera_focal_mm" not in kept  # the user's word wins
