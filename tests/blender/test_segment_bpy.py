""""Segment object" in Blender, on the PyPI bpy module: prompts from Movie Clip tracking markers,
Preview Masks through the real segmentation worker (random SAM 2.1 weights made by the worker's Python), the
cache beside the .blend and its reuse, and Generate picking the cached masks up."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain.bl.segment import markers as segment  # noqa: E402
from blender_stchain.bl.segment import ops as ops_segment  # noqa: E402
from blender_stchain.contracts.prompts import Point  # noqa: E402
from tests.blender.conftest import data_snapshot  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402

BEAR = DATA / "videos" / "bear.mp4"
WORKER_PYTHON = os.environ.get("STCHAIN_WORKER_PYTHON", sys.executable)


@pytest.fixture(scope="module")
def sam2_root(tmp_path_factory):
    """Random SAM 2.1 weights in the official layout, written by the worker's interpreter (torch lives there)."""
    root = tmp_path_factory.mktemp("sam2")
    code = f"from blender_stchain.engine.segment.model import write_random; write_random({str(root)!r}, 'tiny')"
    subprocess.run([WORKER_PYTHON, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    return root


def add_marker(clip, name, frame, co, mute=False):
    track = clip.tracking.tracks.get(name) or clip.tracking.tracks.new(name=name, frame=frame)
    marker = track.markers.find_frame(frame) or track.markers.insert_frame(frame)
    marker.co, marker.mute = co, mute
    return track


@pytest.fixture
def bear_clip(registered):
    clip = bpy.data.movieclips.load(str(BEAR))
    add_marker(clip, "body", 3, (0.5, 0.4))
    add_marker(clip, "body", 5, (0.52, 0.41))
    add_marker(clip, "head", 3, (0.25, 0.5))
    add_marker(clip, "BG sky", 3, (0.05, 0.95))
    add_marker(clip, "head", 6, (0.3, 0.5), mute=True)
    props = bpy.context.scene.stchain
    props.source, props.clip, props.mask = "CLIP", clip, "SEGMENT"
    props.use_frame_range, props.frame_first, props.frame_last = True, 2, 4
    return clip


def test_markers_become_points_in_footage_pixels_on_one_frame(bear_clip):
    def flat(points):
        return [(pytest.approx(p.x, abs=1e-3), pytest.approx(p.y, abs=1e-3), p.positive, p.frame) for p in points]

    points, frame = segment.marker_prompts(bear_clip, (1, 10))
    assert frame == 3  # two object markers there, one on frame 5
    assert [(p.x, p.y, p.positive, p.frame) for p in points] == flat(
        [Point(854 * 0.05, 480 * 0.05, False, 3), Point(427.0, 480 * 0.6, True, 3),
         Point(854 * 0.25, 240.0, True, 3)])  # sorted by track name: "BG sky", "body", "head"
    points, frame = segment.marker_prompts(bear_clip, (4, 10))
    assert frame == 5 and [(p.x, p.y, p.positive, p.frame) for p in points] == flat([Point(854 * 0.52, 480 * 0.59, True, 5)])
    assert segment.marker_prompts(bear_clip, (6, 10)) == ([], None)  # the only marker there is muted


def test_no_marker_and_no_mask_is_one_clear_error_and_changes_nothing(registered):
    clip = bpy.data.movieclips.load(str(BEAR))
    props = bpy.context.scene.stchain
    props.source, props.clip, props.mask = "CLIP", clip, "SEGMENT"
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="Segment object needs a prompt: place tracking markers on the object"):
        bpy.ops.stchain.preview_masks()
    assert data_snapshot() == before


def test_preview_masks_runs_the_worker_caches_beside_the_blend_and_generate_uses_them(bear_clip, sam2_root, tmp_path,
                                                                                         monkeypatch):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert bpy.ops.stchain.preview_masks(weights=str(sam2_root), device="cpu", allow_random_weights=True) == {"FINISHED"}
    _, frames, prompts, folder = ops_segment.plan(bpy.context)
    assert frames == (2, 4) and folder.parent == tmp_path / "stchain_masks"
    assert [p.frame for p in prompts.points] == [3, 3, 3]
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["000002.png", "000003.png", "000004.png"]
    img = bpy.data.images.load(str(files[1]))
    assert tuple(img.size) == (854, 480)
    bpy.data.images.remove(img)
    preview = bpy.data.movieclips["4D Mesh masks"]
    assert preview.frame_start == 2 and tuple(preview.size) == (854, 480)
    assert Path(bpy.path.abspath(preview.filepath)).parent == segment.overlay_dir(folder)  # footage under the masks
    assert sorted(p.name for p in segment.overlay_dir(folder).iterdir()) == [f.name for f in files]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert bpy.ops.stchain.preview_masks(weights=str(sam2_root), allow_random_weights=True) == {"FINISHED"}  # cached: no worker
    assert "(cached)" in bpy.context.window_manager.stchain_status.message
    assert [f.stat().st_mtime_ns for f in files] == stamps
    bear_clip.tracking.tracks["body"].markers.find_frame(3).co = (0.6, 0.4)  # a moved marker: new prompts
    moved = ops_segment.plan(bpy.context)[3]
    assert moved != folder and not segment.cached(moved, (2, 4))


def test_preview_masks_refuses_random_weights_unless_allowed(bear_clip, sam2_root, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="are random checkpoints made by make-random"):
        bpy.ops.stchain.preview_masks(weights=str(sam2_root), device="cpu")
    assert data_snapshot() == before and not (tmp_path / "stchain_masks").exists()


@pytest.mark.parametrize("preview_first", [True, False])
def test_generate_uses_the_cached_masks_or_segments_first(bear_clip, sam2_root, tmp_path, monkeypatch, preview_first):
    from tests.blender.workers import stub_env

    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    if preview_first:
        assert bpy.ops.stchain.preview_masks(weights=str(sam2_root), device="cpu", allow_random_weights=True) == {"FINISHED"}
    folder = ops_segment.plan(bpy.context)[3]
    assert segment.cached(folder, (2, 4)) == preview_first
    for k, v in stub_env("ok").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STCHAIN_WORKER_MODULE", "stub_worker")  # the model's worker; segmentation runs for real
    assert bpy.ops.stchain.generate(weights=str(sam2_root), device="cpu", allow_random_weights=True) == {"FINISHED"}
    assert segment.cached(folder, (2, 4))
    job = json.loads(bpy.data.objects["4D Mesh"]["stchain"])["job"]
    assert job["masks"] == str(folder)  # the model reads the cached masks; its exported frames are gone
    assert Path(job["footage"]).resolve() == BEAR.resolve() and segment.cached(folder, (2, 4))


def test_a_blender_mask_gives_its_bounding_box_on_the_prompt_frame(bear_clip):
    mask = bpy.data.masks.new("around the bear")
    spline = mask.layers.new().splines.new()
    spline.points.add(3)
    for p, co in zip(spline.points, [(0.3, 0.3), (0.6, 0.3), (0.6, 0.6), (0.3, 0.6)]):
        p.co, p.handle_left_type, p.handle_right_type = co, "VECTOR", "VECTOR"
    spline.use_cyclic = True
    props = bpy.context.scene.stchain
    props.mask_datablock = mask
    src = __import__("blender_stchain.bl.footage", fromlist=["probe"]).probe(str(BEAR))
    prompts = segment.collect(props, src, (2, 4))
    # mask space: x in frame widths from the left, y in frame widths from the centre, upwards
    (box,) = prompts.boxes
    assert (box.x0, box.y0, box.x1, box.y1, box.frame) == (256, 155, 512, 411, 3)  # on the markers' frame
    assert len(prompts.points) == 3
    empty = bpy.data.masks.new("empty")
    props.mask_datablock = empty
    with pytest.raises(Exception, match="Mask 'empty' is empty on frame 3"):
        segment.collect(props, src, (2, 4))


def test_headless_segment_options_make_the_masks_generate_uses(registered, sam2_root, tmp_path, monkeypatch, capfd):
    from blender_stchain.bl import headless
    from tests.blender.workers import stub_env

    for k, v in stub_env("ok").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STCHAIN_WORKER_MODULE", "stub_worker")
    out = tmp_path / "out.blend"
    rc = headless.main(["--footage", str(BEAR), "--frames", "2:4", "--segment", "420,260@3", "--segment", "-10,10@3",
                        "--save-masks", str(tmp_path / "m"), "--weights", str(sam2_root), "--device", "cpu",
                        "--allow-random-weights", "--out", str(out)])
    printed = capfd.readouterr()
    assert rc == 0, printed.err[-2000:]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["000002.png", "000003.png", "000004.png"]
    assert '"event": "warning", "message": "SMOKE TEST: random SAM 2.1 weights' in printed.out
    bpy.ops.wm.open_mainfile(filepath=str(out))
    assert json.loads(bpy.data.objects["4D Mesh"]["stchain"])["job"]["masks"] == str(tmp_path / "m")
    assert headless.main(["--footage", str(BEAR), "--mask-source", "none", "--out", str(out)]) == 1
    assert "would feed whole frames to the model; mark the object: --segment X,Y" in capfd.readouterr().err
    assert headless.main(["--footage", str(BEAR), "--segment", "900,10", "--weights", str(sam2_root),
                          "--out", str(out)]) == 1
    assert "error: point 900,10 (frame 1) is outside the 854x480 footage" in capfd.readouterr().err


def test_a_cancel_during_segmentation_ends_the_chain_before_the_model_starts(registered, tmp_path):
    import time

    from blender_stchain.bl.segment.jobs import ChainRunner
    from blender_stchain.bl.runner import ProcessRunner, cancel_path

    code = ("import numpy as np, sys\nfrom blender_stchain.contracts.frames import write_frames\n"
            "from blender_stchain.engine.segment.model import write_random\n"
            f"write_random({str(tmp_path / 'w')!r}, 'small')\nrng = np.random.default_rng(0)\n"
            f"write_frames({str(tmp_path / 'frames')!r}, ((rng.random((120, 160, 3)) * 255).astype(np.uint8) "
            "for _ in range(300)), 24)\n")
    subprocess.run([WORKER_PYTHON, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    job = tmp_path / "segment.json"
    job.write_text(json.dumps({"footage": str(tmp_path / "frames"), "out": str(tmp_path / "masks"),
                               "weights": str(tmp_path / "w"), "device": "cpu", "points": [[80, 60, True, 3]],
                               "allow_random_weights": True}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first = ProcessRunner(["-m", segment.WORKER, job], cancel_file=cancel_path(job), python=WORKER_PYTHON, env=env)
    second = ProcessRunner(["-c", "print('the model ran')"], python=WORKER_PYTHON, env=env)
    chain = ChainRunner([first, second]).start()
    events = []
    while not any(str(e.get("message", "")).startswith("mask of frame 4") for e in events):
        events += chain.events()
        assert chain.final is None, events[-3:]
        time.sleep(0.02)
    asked = time.monotonic()
    chain.cancel()
    final = chain.wait()
    print(f"chain cancelled in {time.monotonic() - asked:.2f} s")
    assert final["event"] == "cancelled" and time.monotonic() - asked < 1.5
    assert second.proc is None and not (tmp_path / "masks").exists()
