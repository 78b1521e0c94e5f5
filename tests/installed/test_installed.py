"""Every feature from the extension as users install it: the built zip, Blender's own installer, a Python with
only bpy, and the real worker on the zip's wheels (tiny random weights, one short clip per case)."""

import json
import subprocess

import pytest

from tests.conftest import DATA
from tests.installed.conftest import ABSENT, HERE, bare_env

pytestmark = [pytest.mark.installed, pytest.mark.slow]

BEAR = DATA / "videos" / "bear.mp4"
HORSE = DATA / "horsejump_gt"
SMALL = dict(anchor_steps=3, grid_resolution=48, coarse_resolution=24, landmarks=64, candidate_resolution=32,
             face_budget=2000)  # tiny random weights: the pipeline's every stage, a fraction of its cost
SET = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]
BEAR_MARKERS = [["body", 2, [0.49, 0.46]], ["back", 2, [0.42, 0.55]], ["BG rocks", 2, [0.05, 0.08]]]
# Third-party imports the worker never needs inside Blender, with the path that does without them:
OUTSIDE = {"av": "video files outside Blender (Blender decodes them into a frames folder)",
           "bpy": "Blender's own module (the Blender side)", "mathutils": "Blender's own module",
           "addon_utils": "Blender's own module", "bpy_extras": "Blender's own module",
           "ray": "batch runs (not shipped)", "scipy": "evaluation (not shipped)"}


def ran_here(report: dict, home) -> None:
    """The job ran on the installed copy and left no job folder behind."""
    assert report["outcome"] == ["FINISHED"], report["message"]
    assert report["result"].startswith(str(home)) and report["jobs_left"] == []
    assert report["versions"]["torch"].endswith("+cpu")  # the zip's CPU torch (the dev venv has one too)


def test_the_fresh_python_has_only_bpy(installed_python, tmp_path):
    code = "import bpy, numpy, importlib.util as u, json; print(json.dumps([m for m in %r if u.find_spec(m)]))" % (
        ABSENT,)
    out = subprocess.run([str(installed_python), "-c", code], env=bare_env(HOME=tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stderr[-2000:]


def test_generate_from_a_movie_clip(run_case, installed, weights_root):
    video = DATA / "videos" / "lifting1_fg.mp4"
    report = run_case("clip", {"video": str(video), "last": 3, "weights": str(weights_root), "settings": SMALL})
    ran_here(report, installed[1])
    assert report["keys"] == 4  # Basis + 3 frames
    assert report["tmp_left"] == []


def test_image_sequence_with_the_whole_clips_masks_and_a_frame_range(run_case, installed, weights_root):
    assert len(list((HORSE / "masks").iterdir())) == 50
    report = run_case("sequence", {"folder": str(HORSE / "video"), "masks": str(HORSE / "masks"), "last": 4,
                                   "weights": str(weights_root), "settings": SMALL})
    ran_here(report, installed[1])
    assert report["keys"] == 5  # Basis + frames 1-4, each with its own mask of the 50
    assert report["masks"] == str(HORSE / "masks")


def test_rgba_frames_then_export_then_apply_result(run_case, installed, weights_root, tmp_path):
    report = run_case("rgba", {"folder": str(DATA / "rgba_frames" / "davis_camel"), "last": 3,
                               "weights": str(weights_root), "settings": SMALL, "write_mode": "pc2",
                               "export_dir": str(tmp_path)})
    ran_here(report["generate"], installed[1])
    assert report["generate"]["keys"] == 4
    exported = report["export"]
    assert {ext: w[0] for ext, w in exported["written"].items()} == {"abc": ["FINISHED"], "glb": ["FINISHED"]}
    assert all(size > 0 for _, size in exported["written"].values())
    imported = exported["imported"]  # Blender's own importer, every frame of the scene
    assert imported["types"] == ["CAMERA", "MESH"] and imported["frames"] == 3
    assert imported["vertex_counts"] == [exported["vertices"]]
    applied = report["apply"]
    assert applied["outcome"] == ["FINISHED"] and applied["result"] == report["generate"]["result"]
    assert applied["keys"] == 0 and applied["has_cache"]  # written again as a point cache, as asked


def test_segment_object_preview_masks_then_generate(run_case, installed, weights_root):
    report = run_case("segment", {"video": str(BEAR), "markers": BEAR_MARKERS, "last": 4,
                                  "weights": str(weights_root), "settings": SMALL})
    preview = report["preview"]
    assert preview["outcome"] == ["FINISHED"], preview["message"]
    assert preview["masks"] == ["000001.png", "000002.png", "000003.png", "000004.png"] and preview["shown"]
    generate = report["generate"]
    ran_here(generate, installed[1])
    assert generate["keys"] == 5 and generate["masks"] == preview["folder"]  # the previewed masks, reused
    assert report["tmp_left"] == []


def test_headless_segment_on_a_video_leaves_no_temp_files(run_case, installed, weights_root, tmp_path):
    """Fails once (a SAM 2.1 size the weights folder lacks: the worker's error, printed once), then succeeds;
    neither leaves anything in the temp folder or a job folder."""
    out = tmp_path / "bear.blend"
    base = ["--footage", str(BEAR), "--frames", "1:4", "--weights", str(weights_root), "--device", "cpu",
            "--allow-random-weights", *SET]
    failing = [*base, "--segment", "420,260", "--segment-model", "large", "--out", str(tmp_path / "no.blend")]
    report = run_case("headless", {"argv": failing, "out": str(tmp_path / "no.blend")})
    errors = [line for line in report["stderr"].splitlines() if "error:" in line]
    assert report["rc"] == 1 and len(errors) == 1, report["stderr"][-2000:]
    assert errors[0].startswith("error: ") and "error: error" not in errors[0] and "sam2.1-hiera-large" in errors[0]
    assert report["temp_new"] == [] and report["tmp_left"] == [] and report["jobs_left"] == []

    report = run_case("headless", {"argv": [*base, "--segment", "420,260@2", "--out", str(out)], "out": str(out)})
    assert report["rc"] == 0, report["stderr"][-3000:]
    assert report["keys"] == 5 and out.is_file()  # Basis + frames 1-4
    assert report["temp_new"] == [] and report["tmp_left"] == [] and report["jobs_left"] == []
    assert "error:" not in report["stderr"]


def test_check_weights(run_case, weights_root):
    report = run_case("weights", {"weights": str(weights_root)})
    assert report["outcome"] == ["FINISHED"], report["message"]
    assert "random checkpoints: results are smoke tests" in report["message"]
    assert f"weights root: {weights_root}" in report["message"]


def test_every_module_imports_with_what_the_zip_carries(run_case, installed):
    _, home = installed
    report = run_case("imports", {"audit": str(HERE / "audit.py")})
    assert report["blender_failed"] == {} and len(report["blender_modules"]) > 10
    worker = report["worker"]
    assert "error" not in worker, worker.get("error")
    assert worker["failed"] == {} and worker["imported"] >= 80
    print(f"{len(report['blender_modules'])} Blender-side and {worker['imported']} worker modules imported")
    local = str(home / ".config" / "blender")
    for name, where in worker["third_party"].items():
        if name in OUTSIDE:
            continue
        assert where["origin"] is not None, f"{name} (imported by {where['used_by']}) is not in the zip"
        assert where["origin"].startswith(local) or name == "numpy", (name, where["origin"])
    assert worker["third_party"]["PIL"]["origin"].startswith(local)  # masks: the zip's Pillow
    assert worker["third_party"]["av"]["origin"] is None  # no PyAV: Blender decodes every video


def test_gpu_runtime_plan_from_the_zips_own_table(run_case, tmp_path):
    from tests.runtime.standins import nvidia_smi

    nvidia_smi(tmp_path / "bin", "590.44.01")
    report = run_case("runtime_plan", {"path": str(tmp_path / "bin")})
    assert report["outcome"] == ["FINISHED"], report["message"]
    assert "cu130" in report["message"] and "590.44.01" in report["message"], report["message"]
