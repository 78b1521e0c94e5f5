"""Registration, the generate operator through the headless entry with a real worker process,
and the failure paths: each leaves the scene exactly as it was."""

import json
import tempfile
import threading
import time

import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

import blender_stchain  # noqa: E402
from blender_stchain.bl import headless, ops, prefs  # noqa: E402
from tests.blender.conftest import data_snapshot  # noqa: E402
from tests.blender.workers import WORKER_PYTHON, stub_env  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402

CAMEL = DATA / "rgba_frames" / "davis_camel"


@pytest.fixture
def stub(monkeypatch):
    """Point the operator at the stand-in worker process (env only; the real ProcessRunner runs)."""

    def use(mode):
        for k, v in stub_env(mode).items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("STCHAIN_WORKER_MODULE", "stub_worker")

    return use


def test_register_unregister_twice(scene):
    from blender_stchain.bl import registration

    for _ in range(2):
        blender_stchain.register()
        assert hasattr(bpy.types.Scene, "stchain") and hasattr(bpy.types, "STCHAIN_OT_generate")
        assert bpy.ops.stchain.generate.poll() and len(registration._cli) == 1  # `blender -c stchain`
        blender_stchain.unregister()
        assert registration._cli == []
        assert not hasattr(bpy.types.Scene, "stchain") and not hasattr(bpy.types, "STCHAIN_OT_generate")
        assert not hasattr(bpy.types, "STCHAIN_PT_view3d")


def test_headless_generate_and_reopen(registered, stub, tmp_path, capfd):
    stub("ok")
    out = tmp_path / "out.blend"
    rc = headless.main(["--footage", str(CAMEL), "--frames", "3:7", "--out", str(out)])
    lines = capfd.readouterr().out.splitlines()
    assert rc == 0, lines[-5:]
    status = bpy.context.window_manager.stchain_status  # what the panel draws under "last job"
    assert [w.text for w in status.warnings] == ["stand-in worker: synthetic result"]
    assert status.mask_source == "alpha"
    assert any(line.startswith('{"event": "progress", "stage": "chain"') for line in lines)  # JSON progress
    assert not any("render | Saved" in line or "Saved: " in line for line in lines)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene, ob = bpy.context.scene, bpy.data.objects["4D Mesh"]
    assert (scene.frame_start, scene.frame_end) == (3, 7)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (512, 512)
    assert [k.name for k in ob.data.shape_keys.key_blocks][1:] == [f"frame_{f:04d}" for f in range(3, 8)]
    for f in range(3, 8):
        scene.frame_set(f)
        assert [k.name for k in ob.data.shape_keys.key_blocks[1:] if k.value > 0] == [f"frame_{f:04d}"]
    bg = scene.camera.data.background_images[0].clip
    assert bg.source == "SEQUENCE" and bg.frame_duration == 16
    # only our objects (no factory cube, light or camera), the mesh has its material, result beside the .blend
    assert sorted(o.name for o in bpy.data.objects) == ["4D Mesh", "4D Mesh camera"]
    assert ob.active_material is not None and ob.active_material.name == "4D Mesh material"
    kept = tmp_path / "out_4dmesh.safetensors"
    meta = json.loads(ob["stchain"])
    assert kept.is_file() and meta["result"] == str(kept) and meta["mask_source"] == "alpha"
    assert meta["camera_status"].startswith("solved")
    # the clip's tracking camera is the solved camera
    from blender_stchain.contracts.result import load_result

    K = load_result(kept).K
    tc = bg.tracking.camera
    assert tc.focal_length_pixels == pytest.approx(float(K[0, 0]), rel=1e-4)
    assert tuple(tc.principal_point_pixels) == pytest.approx((float(K[0, 2]), 512 - float(K[1, 2])), abs=1e-3)


@pytest.mark.parametrize("mode,args,expect", [
    ("crash", [], "the worker was killed (out of memory?); nothing was written"),
    ("raise", [], "CUDA out of memory (stand-in)"),
    ("ok", ["--weights", "/nonexistent/weights"], "weights folder /nonexistent/weights is missing"),
    ("ok", ["--frames", "10:40"], "frame range 10:40 is outside the footage (1-16)"),
])
def test_failures_leave_scene_unchanged(registered, stub, tmp_path, capfd, monkeypatch, mode, args, expect):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # job folders of our own (others share /tmp)
    stub(mode)
    before = data_snapshot()
    jobs = set(prefs.user_dir("jobs").iterdir())
    rc = headless.main(["--footage", str(CAMEL), "--frames", "1:4", "--out", str(tmp_path / "o.blend"), *args])
    err = capfd.readouterr().err.strip().splitlines()
    print(mode, args, "->", rc, err[-1])
    assert rc == 1 and err[-1].startswith("error: " + expect)
    assert sum(expect in line for line in err) == 1  # printed once
    assert data_snapshot() == before and not (tmp_path / "o.blend").exists()
    assert set(prefs.user_dir("jobs").iterdir()) == jobs  # the job folder (frames, job.json) is gone


def test_cancel_leaves_scene_unchanged(registered, stub, tmp_path):
    stub("hang")
    before = data_snapshot()

    def press_cancel():  # what the Cancel button / Esc does, from another thread during a blocking run
        while "job" not in ops._active or not getattr(ops._active["job"].runner, "alive", False):
            time.sleep(0.01)
        time.sleep(0.3)
        ops._active["job"].cancel()

    threading.Thread(target=press_cancel, daemon=True).start()
    t0 = time.monotonic()
    rc = headless.main(["--footage", str(CAMEL), "--frames", "1:2", "--out", str(tmp_path / "o.blend")])
    print(f"cancelled after {time.monotonic() - t0:.2f} s")
    assert rc == 2 and bpy.context.window_manager.stchain_status.message == "Cancelled; the scene was not changed"
    assert data_snapshot() == before


def test_apply_result_reuses_footage_and_changes_mode(registered, stub, tmp_path):
    stub("ok")
    assert headless.main(["--footage", str(CAMEL), "--frames", "1:3", "--out", str(tmp_path / "a.blend")]) == 0
    status = bpy.context.window_manager.stchain_status
    assert bpy.ops.stchain.apply_result(filepath=status.result, write_mode="pc2", frame_offset=10) == {"FINISHED"}
    scene, ob = bpy.context.scene, bpy.data.objects["4D Mesh"]
    assert "4D Mesh cache" in ob.modifiers and (scene.frame_start, scene.frame_end) == (11, 13)
    assert scene.camera.data.background_images[0].clip.frame_start == 11  # footage kept, shifted with the mesh
    assert len(bpy.data.objects) == 2


def test_detect_devices_probes_the_worker_python(registered, monkeypatch):
    """The device list comes from torch in the worker's interpreter, also where Blender's own has no
    torch (the 4.2 / 5.2 matrices); Blender's process never imports torch."""
    import sys

    from blender_stchain.bl import prefs

    monkeypatch.setenv("STCHAIN_WORKER_PYTHON", WORKER_PYTHON)
    cache = prefs.user_dir("cache") / "devices.json"
    cache.unlink(missing_ok=True)
    had_torch = "torch" in sys.modules  # engine tests in the same session may have imported it
    assert bpy.ops.stchain.detect_devices() == {"FINISHED"} and cache.is_file()
    ids = [item[0] for item in prefs._devices(None, bpy.context)]
    print("devices:", ids)
    assert ids[:2] == ["auto", "cpu"] and (had_torch or "torch" not in sys.modules)
    import subprocess  # Detect Devices shows the text of the worker's `devices` command, line for line

    cli = subprocess.run([WORKER_PYTHON, "-m", "blender_stchain", "devices"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    shown = bpy.context.window_manager.stchain_status.message.splitlines()
    printed = cli.stdout.strip().splitlines()
    assert shown[:len(printed)] == printed and any(line.startswith("auto -> ") for line in shown)
    if len(ids) <= 2:  # no GPU in this runtime (this machine): what to install follows, from the runtime plan
        assert shown[len(printed):] == [f"No GPU in this runtime: {prefs.install_hint()}"]


def test_download_needs_online_access(registered):
    assert not bpy.app.online_access  # the bpy module runs offline
    with pytest.raises(RuntimeError, match="Online Access is off"):
        bpy.ops.stchain.weights(action="download")


def test_bad_arguments(registered):
    assert headless.main(["--footage", str(CAMEL), "--out", "x.blend", "--frames", "7:2"]) == 1
    assert headless.main(["--footage", "/no/such/clip.mp4", "--out", "x.blend"]) == 1
    assert headless.main(["--out", "x.blend"]) == 1


def test_movie_clip_source(registered, stub):
    """Footage from a Movie Clip: decoded by Blender, the user's clip is left alone."""
    stub("ok")
    scene = bpy.context.scene
    clip = bpy.data.movieclips.load(str(DATA / "videos" / "bear.mp4"))
    props = scene.stchain
    props.source, props.clip, props.mask = "CLIP", clip, "NONE"
    props.use_frame_range, props.frame_first, props.frame_last = True, 4, 6
    assert bpy.ops.stchain.generate() == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (4, 6)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (854, 480)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0)
    background = scene.camera.data.background_images[0].clip
    assert background is not clip and background.filepath == clip.filepath
    assert len(clip.tracking.tracks) == 0 and clip.get("stchain_role") is None


def test_camera_not_estimated_reaches_the_info_report_and_stays_in_the_panel(registered, stub, tmp_path, capfd):
    from blender_stchain.bl import panels

    stub("nocamera")
    assert headless.main(["--footage", str(CAMEL), "--frames", "1:3", "--out", str(tmp_path / "a.blend")]) == 0
    out = capfd.readouterr()
    report = [line for line in (out.out + out.err).splitlines() if "camera not estimated" in line
              and not line.startswith('{')]
    assert report, "the Info report did not show the camera warning"
    warnings = [w.text for w in bpy.context.window_manager.stchain_status.warnings]
    assert warnings[-1].startswith("camera not estimated (the matches carry no depth)")
    lines = panels.warning_lines(warnings)
    assert lines[0] == ("camera not estimated (the matches carry no", "ERROR")
    assert all(len(text) <= 44 for text, _ in lines) and ("stand-in worker: synthetic result", "DOT") in lines
    stub("ok")  # the next run replaces them
    assert headless.main(["--footage", str(CAMEL), "--frames", "1:3", "--out", str(tmp_path / "b.blend")]) == 0
    assert [w.text for w in bpy.context.window_manager.stchain_status.warnings] == ["stand-in worker: synthetic result"]
