"""``eval make-bench`` + ``eval`` end to end: a tiny bench rendered by the PyPI bpy module, scored
with the oracle (near-perfect: proves the harness) and with tiny random weights (a smoke test).

The bench is 2 clips x 8 frames at 128 px (seconds to render); the ActionBench counts are reduced
(300 ICP points, 4,000 Chamfer points, 150 ICP iterations) so that the scores run on CPU here.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from blender_stchain.cli import main
from blender_stchain.engine.camera import tracks_2d
from blender_stchain.contracts.result import Result
from blender_stchain.evaluation.bench import read_bench
from blender_stchain.evaluation.scoring import score

from ..conftest import REPO

COUNTS = ["--icp-points", "300", "--chamfer-points", "4000", "--icp-iterations", "150"]
QUICK = ["--preset", "fast"] + [x for kv in ("anchor_steps=4", "grid_resolution=64", "coarse_resolution=32",
                                           "face_budget=3000", "landmarks=128", "candidate_resolution=48",
                                           "baseline_steps=4", "baseline_anchor_steps=4") for x in ("--set", kv)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Built through the CLI in a fresh interpreter, which must never import torch (Blender side)."""
    out = tmp_path_factory.mktemp("bench")
    code = ("import sys; from blender_stchain.cli import main; "
            f"rc = main(['eval', 'make-bench', {str(out)!r}, '--size', '128', '--clips', "
            "'capsule_twist,mushroom_static', '--frames', '8', '--tracks', '64']); "
            "assert 'torch' not in sys.modules, 'make-bench imported torch'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.blender
def test_make_bench_writes_frames_and_consistent_ground_truth(bench):
    clips = read_bench(bench)
    assert [c.name for c in clips] == ["capsule_twist", "mushroom_static"]
    for clip in clips:
        frames = sorted(clip.footage.glob("*.png"))
        assert len(frames) == clip.frames == 8
        alpha = np.stack([np.asarray(Image.open(f))[..., 3] for f in frames])
        assert alpha.shape == (8, 128, 128) and 0.05 < (alpha > 0).mean() < 0.6
        # the GT camera (numpy) and Blender's render agree: visible GT tracks land on the object
        xy, vis = clip.tracks_2d, clip.track_visible
        t, i = np.nonzero(vis)
        on = alpha[t, xy[t, i, 1].astype(int), xy[t, i, 0].astype(int)] > 0
        assert vis.mean() > 0.15 and on.mean() == 1.0
        # Blender's ray casts and the engine's own depth test agree on visibility
        _, ours = tracks_2d(clip.vertices, clip.faces, clip.track_ids, clip.K, clip.world_to_camera, clip.image_size)
        assert (ours.astype(bool) == vis).mean() > 0.97
        assert clip.surfaces.shape == (8, 20_000, 3) and clip.meta["camera"] in ("static", "orbit")
    assert read_bench(bench)[0].meta["fov_deg"] != read_bench(bench)[1].meta["fov_deg"]


@pytest.mark.blender
@pytest.mark.slow
def test_oracle_scores_near_perfect(bench, tmp_path, capsys):
    out = tmp_path / "oracle"
    assert main(["eval", str(bench), "--oracle", "--out", str(out)] + COUNTS) == 0
    printed = capsys.readouterr().out
    assert "ORACLE" in printed and "capsule_twist" in printed and "MEAN" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["protocol"].startswith("reduced") and not report["smoke_test"]
    counts = dict(n_pts_icp=300, n_pts_chamfer=4000, icp_iterations=150)
    for row, clip in zip(report["clips"], read_bench(bench)):
        # the floor: the GT mesh and camera scored as if they were a result (sampling noise only)
        gt = Result(faces=clip.faces, vertices=clip.vertices, confidence=np.ones(clip.vertices.shape[:2]),
                    frame_numbers=np.arange(1, 9), K=clip.K, world_to_camera=clip.world_to_camera,
                    image_size=np.asarray(clip.image_size))
        floor = score(clip, gt, counts)
        print(f"\n[oracle] {clip.name}: " + ", ".join(f"{k} {row[k]:.4f} (floor {floor[k]:.4f})"
                                                      for k in ("cd_3d", "cd_4d", "cd_m")))
        print(f"[oracle] {clip.name}: camera {row['camera']}, tracks delta_avg {row['tracks']['delta_avg']:.3f} "
              f"OA {row['tracks']['occlusion_accuracy']:.3f} AJ {row['tracks']['average_jaccard']:.3f}")
        for k in ("cd_3d", "cd_4d", "cd_m"):
            assert row[k] < 1.5 * floor[k] + 0.01, (clip.name, k)
        cam = row["camera"]
        assert cam["focal_error"] < 0.01 and cam["reprojection_px"] < 1.0
        assert cam["rotation_deg"] < 2.0 and cam["centre_error"] < 0.08
        assert row["tracks"]["delta_avg"] > 0.7 and row["tracks"]["occlusion_accuracy"] > 0.9
        assert row["camera_estimated"]


@pytest.mark.blender
@pytest.mark.slow
def test_smoke_run_with_tiny_random_weights_then_rescored_from_results(bench, tiny_weights, tmp_path, capsys):
    out = tmp_path / "smoke"
    args = ["eval", str(bench), "--limit", "1", "--weights", str(tiny_weights), "--allow-random-weights",
            "--device", "cpu", "--out", str(out)] + QUICK + COUNTS
    assert main(args) == 0
    assert "SMOKE TEST" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    row = report["clips"][0]
    assert report["smoke_test"] and report["label"].startswith("SMOKE TEST") and len(report["clips"]) == 1
    for k in ("cd_3d", "cd_4d", "cd_m"):
        assert np.isfinite(row[k]) and row[k] > 0
    assert set(row["seconds"]) >= {"load", "anchor", "windows", "camera"}
    assert row["memory"]["process_peak_rss_mb"] > 100
    assert (out / "results" / "capsule_twist" / "chain.safetensors").exists()
    again = tmp_path / "again"
    assert main(["eval", str(bench), "--limit", "1", "--results", str(out / "results"), "--out", str(again)] + COUNTS) == 0
    row2 = json.loads((again / "metrics.json").read_text())["clips"][0]
    assert [row2[k] for k in ("cd_3d", "cd_4d", "cd_m")] == [row[k] for k in ("cd_3d", "cd_4d", "cd_m")]
    assert row2["camera"] == row["camera"] and row2["tracks"] == row["tracks"]


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing")]) == 1
    assert "make-bench" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty")]) == 1
    assert "holds no clip" in capsys.readouterr().err


def test_engine_side_of_eval_never_imports_bpy():
    code = ("import sys; import blender_stchain.evaluation.cli, blender_stchain.evaluation.runner, "
            "blender_stchain.evaluation.scoring, blender_stchain.evaluation.oracle; "
            "assert not any(m == 'bpy' or m.startswith('bpy.') for m in sys.modules), 'bpy imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
