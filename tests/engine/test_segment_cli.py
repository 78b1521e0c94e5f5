"""Headless segmentation end to end on real footage (bear.mp4), the run's mask-source rule, DAVIS J&F on
hand-computed cases and on the horsejump ground truth, and flat memory in clip length."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from blender_stchain.engine.segment.evaluate import boundary, dilate_disk, evaluate, f_measure, jaccard

from ..conftest import DATA, REPO
from .test_pipeline import QUICK

BEAR = DATA / "videos" / "bear.mp4"
HORSE = DATA / "horsejump_gt" / "masks"


def cli(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "blender_stchain", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sam2_root(tmp_path_factory):
    from blender_stchain.engine.segment.model import write_random

    root = tmp_path_factory.mktemp("sam2")
    write_random(root, "tiny", seed=0)
    return root


def test_masks_command_writes_one_footage_size_mask_per_frame(sam2_root, tmp_path):
    args = ["masks", "--footage", BEAR, "--frames", "3:7", "--segment", "400,250@5", "--segment", "-20,20@5",
            "--weights", sam2_root, "--device", "cpu", "--allow-random-weights"]
    out = cli(*args, "--out", tmp_path / "a")
    assert out.returncode == 0, out.stderr
    assert "SMOKE TEST: random SAM 2.1 weights" in out.stderr and "5 masks (sam2.1-hiera-tiny) written" in out.stderr
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [f"{n:06d}.png" for n in range(3, 8)] and not (tmp_path / "a.part").exists()
    for name in files:
        img = Image.open(tmp_path / "a" / name)
        arr = np.asarray(img)
        assert img.mode == "L" and img.size == (854, 480) and set(np.unique(arr)) <= {0, 255}
    assert cli(*args, "--out", tmp_path / "b").returncode == 0
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in files)


def test_masks_refuse_random_weights_unless_allowed(sam2_root, tmp_path):
    out = cli("masks", "--footage", BEAR, "--frames", "3:4", "--segment", "400,250@3", "--weights", sam2_root,
              "--device", "cpu", "--out", tmp_path / "m")
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "are random checkpoints made by make-random; pass --allow-random-weights" in out.stderr
    assert "sam2.1-hiera-tiny" in out.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.part").exists()


@pytest.mark.parametrize("extra, message", [
    (["--segment", "900,10"], r"point 900,10 \(frame 1\) is outside the 854x480 footage"),
    (["--segment", "10,10@90"], "point 10,10 is on frame 90, outside the chosen frames 1-82"),
    (["--segment-box", "10,10,5,5"], "needs X0 < X1 and Y0 < Y1"),
    (["--segment", "-10,10"], "frame 1 has only background points"),
    ([], "no object to segment: mark the object: --segment X,Y"),
])
def test_bad_prompts_are_one_line(sam2_root, tmp_path, extra, message):
    out = cli("masks", "--footage", BEAR, "--out", tmp_path / "m", "--weights", sam2_root, *extra)
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0 and out.stderr.strip().startswith("error:")
    assert __import__("re").search(message, out.stderr), out.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.part").exists()


def test_run_without_any_mask_source_stops_with_how_to_give_one(tiny_weights, tmp_path):
    out = cli("run", "--footage", BEAR, "--frames", "1:4", "--out", tmp_path / "r.safetensors",
              "--weights", tiny_weights, "--allow-random-weights")  # the weights are fine: the masks stop it
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "has no alpha and no masks were given; mark the object: --segment X,Y[@FRAME]" in out.stderr


def test_run_with_a_point_segments_then_reconstructs(tiny_weights, tmp_path):
    import json

    from blender_stchain.engine.segment.model import write_random

    write_random(tiny_weights, "tiny")  # beside the backbone, as `weights make-random` writes it

    sets = [x for k, v in QUICK.items() for x in ("--set", f"{k}={v}")]
    out = cli("run", "--footage", BEAR, "--frames", "2:5", "--segment", "420,260@3", "--save-masks", tmp_path / "m",
              "--weights", tiny_weights, "--allow-random-weights", "--preset", "fast", "--device", "cpu",
              "--out", tmp_path / "r.safetensors", *sets)
    assert out.returncode == 0, out.stderr[-3000:]
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[-1] == {"event": "done", "result": str(tmp_path / "r.safetensors")}
    masks = sorted((tmp_path / "m").iterdir())
    assert len(masks) == 82  # one per footage frame: blank outside 2-5, so the folder pairs with the clip
    areas = {int(p.stem): np.asarray(Image.open(p)).mean() / 255 for p in masks}
    assert all(areas[n] == 0 for n in areas if not 2 <= n <= 5) and all(areas[n] > 0 for n in range(2, 6))
    from blender_stchain.contracts.result import load_result

    r = load_result(tmp_path / "r.safetensors")
    assert list(r.frame_numbers) == [2, 3, 4, 5]


# ------------------------------------------------------------------------------------------------ J&F

def square(h, w, r0, c0, size=2):
    m = np.zeros((h, w), bool)
    m[r0:r0 + size, c0:c0 + size] = True
    return m


def test_boundary_and_disk_follow_the_davis_definitions():
    ring = {(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (3, 3)}  # worked by hand for a 2x2 block at (2, 2)
    assert set(zip(*np.nonzero(boundary(square(6, 6, 2, 2))))) == ring
    one = np.zeros((9, 9), bool)
    one[4, 4] = True
    assert dilate_disk(one, 2).sum() == 13 and dilate_disk(one, 1).sum() == 5  # x^2 + y^2 <= r^2


def test_j_and_f_on_hand_computed_cases():
    a = square(40, 40, 10, 10)
    assert jaccard(a, a) == 1 and f_measure(a, a) == 1
    empty = np.zeros_like(a)
    assert jaccard(empty, empty) == 1 and f_measure(empty, empty) == 1
    assert jaccard(empty, a) == 0 and f_measure(empty, a) == 0 and f_measure(a, empty) == 0
    shifted = square(40, 40, 10, 11)  # 2 of 6 pixels shared; every boundary pixel 1 px (radius 1) from the other
    assert jaccard(shifted, a) == pytest.approx(2 / 6) and f_measure(shifted, a) == 1
    extra = a | square(40, 40, 30, 30)  # precision 8/16, recall 8/8 -> F = 2 * 0.5 / 1.5
    assert jaccard(extra, a) == 0.5 and f_measure(extra, a) == pytest.approx(2 / 3)
    far = square(40, 40, 10, 14)  # boundaries 4 px apart: nothing matches within 1 px
    assert f_measure(far, a) == 0


def test_masks_eval_on_the_horsejump_ground_truth(tmp_path):
    out = cli("masks", "eval", "--pred", HORSE, "--gt", HORSE)
    assert out.returncode == 0 and out.stdout.strip() == "J&F 1.0000  J 1.0000  F 1.0000  (48 frames)", out
    files = sorted(HORSE.iterdir())
    (tmp_path / "p").mkdir()
    for f in files:  # every prediction shifted 12 px right: past the 8 px DAVIS boundary tolerance at 854x480
        gt = np.asarray(Image.open(f)) > 127
        Image.fromarray(np.roll(gt, 12, axis=1).astype(np.uint8) * 255).save(tmp_path / "p" / f.name)
    score = evaluate(tmp_path / "p", HORSE, all_frames=True)
    gts = [np.asarray(Image.open(f)) > 127 for f in files]
    j = np.mean([np.logical_and(np.roll(g, 12, 1), g).sum() / np.logical_or(np.roll(g, 12, 1), g).sum() for g in gts])
    print(score.line())
    assert score.frames == 50 and score.j == pytest.approx(j) and 0.1 < score.f < 0.9
    assert evaluate(tmp_path / "p", HORSE).frames == 48  # DAVIS leaves out the first and last frames
    (tmp_path / "q").mkdir()
    for f in files[:10]:
        (tmp_path / "q" / f.name).write_bytes(f.read_bytes())
    short = cli("masks", "eval", "--pred", tmp_path / "p", "--gt", tmp_path / "q")
    assert short.returncode == 1 and short.stderr.count("\n") == 1 and "has 50 masks but --gt" in short.stderr


# ------------------------------------------------------------------------------------------------ memory

def peak_mb(frames: int, root) -> float:
    """VmHWM of a fresh process propagating through ``frames`` generated 240x320 frames."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "import numpy as np\n"
            "from blender_stchain.engine.segment.model import load\n"
            "from blender_stchain.engine.segment.propagate import Propagator\n"
            "from blender_stchain.contracts.prompts import parse, resolve\n"
            f"n = {frames}\nnet = load({str(root)!r})[0]\n"
            "base = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)\n"
            "read = lambda i: np.roll(base, i, axis=1)\n"
            "fps = resolve(parse(['100,100@%d' % (n // 2)]), tuple(range(1, n + 1)), (320, 240))\n"
            "count = sum(1 for _ in Propagator(net, read, n, (320, 240)).run(fps))\n"
            "assert count == n\n"
            "print(next(int(s.split()[1]) for s in open('/proc/self/status') if s.startswith('VmHWM')) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_is_flat_in_clip_length(sam2_root):
    short, long = peak_mb(100, sam2_root), peak_mb(1000, sam2_root)
    print(f"segmentation peak RSS: 100 frames {short:.0f} MB, 1000 frames {long:.0f} MB ({long / short - 1:+.1%})")
    assert long <= 1.10 * short


def test_the_segmentation_worker_stops_within_a_second_of_a_cancel(tmp_path):
    """Blender's Preview Masks path: the worker process, its cancel file, the runner's final event."""
    import json
    import time

    from blender_stchain.bl.runner import ProcessRunner, cancel_path
    from blender_stchain.contracts.frames import write_frames
    from blender_stchain.engine.segment.model import write_random

    write_random(tmp_path / "w", "small")
    rng = np.random.default_rng(0)
    write_frames(tmp_path / "frames", ((rng.random((120, 160, 3)) * 255).astype(np.uint8) for _ in range(400)), 24)
    job = tmp_path / "segment.json"
    job.write_text(json.dumps({"footage": str(tmp_path / "frames"), "out": str(tmp_path / "masks"),
                               "weights": str(tmp_path / "w"), "device": "cpu", "points": [[80, 60, True, 3]],
                               "allow_random_weights": True}))
    runner = ProcessRunner(["-m", "blender_stchain.engine.segment.worker", job], cancel_file=cancel_path(job),
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, pythonpath=[str(REPO)]).start()
    events = []
    while not any(e.get("message", "").startswith("mask of frame 5") for e in events):
        events += runner.events()
        assert runner.final is None, events[-3:]
        time.sleep(0.02)
    asked = time.monotonic()
    runner.cancel()
    final = runner.wait()
    stopped = time.monotonic() - asked
    print(f"worker stopped {stopped:.2f} s after the cancel")
    assert final["event"] == "cancelled" and stopped < 1.0 and runner.proc.returncode == 2
    assert not (tmp_path / "masks").exists() and not (tmp_path / "masks.part").exists()


def test_an_object_that_leaves_and_comes_back_is_a_warning_naming_the_frames(sam2_root, tmp_path):
    """Weights whose object score follows the picture (score head x1000, bias 21.5: about +1 on the marked
    frame, +21 on the plain frames, -1.2 on the noise frames): plain frames 1-4 and 9-12 show the object,
    noise frames 5-8 do not."""
    import torch

    from blender_stchain.contracts.frames import write_frames
    from blender_stchain.contracts.prompts import parse
    from blender_stchain.contracts.safetensors_io import read_header
    from blender_stchain.engine.weights.tensors import load_tensors, write_streaming
    from blender_stchain.engine.segment.run import segment_footage

    src, dst = sam2_root / "sam2.1-hiera-tiny", tmp_path / "w" / "sam2.1-hiera-tiny"
    tensors = load_tensors(src / "model.safetensors")
    tensors["mask_decoder.pred_obj_score_head.proj_out.weight"] *= 1000
    tensors["mask_decoder.pred_obj_score_head.proj_out.bias"] = torch.tensor([21.5])
    dst.mkdir(parents=True)
    (dst / "config.json").write_text((src / "config.json").read_text())
    write_streaming(dst / "model.safetensors", [(k, "F32", tuple(v.shape)) for k, v in tensors.items()],
                    lambda k: tensors[k], dict(read_header(src / "model.safetensors").metadata))
    noise = (np.random.default_rng(0).random((72, 96, 3)) * 255).astype(np.uint8)
    plain = np.zeros((72, 96, 3), np.uint8)
    write_frames(tmp_path / "f", [noise if 5 <= n <= 8 else plain for n in range(1, 13)], 24)
    events = []
    summary = segment_footage(tmp_path / "f", parse(["30,30@2"]), tmp_path / "m", weights=tmp_path / "w",
                              device="cpu", on_event=events.append, overlay=tmp_path / "o", allow_random=True)
    assert summary.empty == (5, 6, 7, 8)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("the object is not found (empty mask) on frames 5-8; it left the picture or was lost there" in w
               for w in warnings), warnings
    areas = {int(p.stem): (np.asarray(Image.open(p)) > 0).mean() for p in (tmp_path / "m").iterdir()}
    assert all(areas[n] == 0 for n in range(5, 9)) and all(areas[n] > 0 for n in (1, 2, 3, 4, 9, 10, 11, 12))
    gone = np.asarray(Image.open(tmp_path / "o" / "000006.png")).astype(int)  # overlay: background at 35 %
    assert gone.shape == (72, 96, 3) and np.abs(gone - np.round(0.35 * noise)).max() <= 1
    shown = np.asarray(Image.open(tmp_path / "o" / "000002.png")).astype(int)
    inside = np.asarray(Image.open(tmp_path / "m" / "000002.png")) > 0
    assert (shown[inside] == np.round(0.3 * np.array([255, 140, 0]))).all()  # plain black frame: the tint alone


def test_a_pipeline_run_without_any_mask_says_so(tiny_weights, tmp_path):
    """The engine itself (a job file from elsewhere) warns that whole frames go in; stopped right after."""
    from blender_stchain.contracts.errors import Cancelled
    from blender_stchain.contracts.job import JobSpec
    from blender_stchain.engine.pipeline import NO_MASK, run

    events = []
    job = JobSpec(footage=str(BEAR), out=str(tmp_path / "r.safetensors"), weights=str(tiny_weights), frames=(1, 2),
                  allow_random_weights=True, device="cpu")
    with pytest.raises(Cancelled):
        run(job, on_event=events.append, cancel=lambda: any(e.get("message") == NO_MASK for e in events))
    assert any(e.kind == "warning" and e.get("message") == NO_MASK for e in events)
    assert not (tmp_path / "r.safetensors").exists()
