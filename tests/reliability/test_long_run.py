"""A 1,000-frame clip (generated: a deforming blob on white, written in the frames format Blender
hands over) runs to the end with tiny weights, with memory flat in clip length."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from blender_stchain.contracts.frames import write_frames
from blender_stchain.contracts.result import load_result
from tests.conftest import REPO
from tests.helpers import peak_rss_mb, quick_job
from tests.reliability.helpers import FAULTS, leftovers

pytestmark = pytest.mark.slow  # a 1,000-frame clip, several runs: minutes


def blob_clip(folder, frames: int, size: int = 96):
    yy, xx = np.mgrid[:size, :size] / size

    def frame(i):
        t = i / 40.0
        cx, cy = 0.5 + 0.15 * np.sin(t), 0.5 + 0.1 * np.cos(0.7 * t)
        r = 0.22 + 0.05 * np.sin(3 * t)
        inside = ((xx - cx) / (1 + 0.3 * np.sin(t))) ** 2 + (yy - cy) ** 2 < r**2
        rgba = np.full((size, size, 4), 255, np.uint8)
        rgba[inside, :3] = (np.array([200, 80, 40]) * (0.6 + 0.4 * yy[inside, None])).astype(np.uint8)
        rgba[..., 3] = np.where(inside, 255, 0)
        return rgba

    return write_frames(folder, (frame(i) for i in range(frames)), fps=24)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return blob_clip(tmp_path_factory.mktemp("clip") / "blob", 1000)


def test_thousand_frames_complete_with_flat_memory(long_clip, tiny_weights, tmp_path):
    """Windows (16 frames), camera chunks (96 frames) and fixed-size RANSAC batches bound the working
    set; what grows with the clip is ~24 bytes per landmark and frame. The frames-folder clip is the
    sensitive case: nothing else (video decoding) hides a growth."""
    peaks = {n: peak_rss_mb(n, tiny_weights, tmp_path, footage=long_clip) for n in (48, 200, 1000)}
    r = load_result(tmp_path / "m1000.safetensors")
    assert list(r.frame_numbers) == list(range(1, 1001)) and np.isfinite(r.vertices).all()
    text = ", ".join(f"{n} frames {mb:.0f} MB" for n, mb in peaks.items())
    print(f"peak RSS: {text} (48 -> 200: {peaks[200] / peaks[48] - 1:+.1%}, 200 -> 1000: "
          f"{peaks[1000] / peaks[200] - 1:+.1%})")
    FAULTS.append(("1000-frame clip", f"peak RSS {text}", False))
    assert peaks[200] <= 1.10 * peaks[48] and peaks[1000] <= 1.10 * peaks[200]


# (stage, message prefix) of the event after which the cancel is asked: every stage of a long run,
# including a window in the middle of the clip and the camera solve over all 1,000 frames.
CANCEL_POINTS = [("anchor", "anchor shape"), ("windows", "window 1/"), ("windows", "window 34/"),
                 ("camera", "solving the camera: 192/")]


def test_cancel_at_every_stage_of_a_long_run_is_prompt_and_leaves_nothing(long_clip, tiny_weights, tmp_path):
    job = quick_job(long_clip, tmp_path / "out" / "r.safetensors", tiny_weights, frames=(1, 1000),
                    settings=dict(landmarks=64, candidate_resolution=32))
    path = job.save(tmp_path / "job.json")
    cancel = tmp_path / "job.json.cancel"
    for stage, prefix in CANCEL_POINTS:
        proc = subprocess.Popen([sys.executable, "-m", "blender_stchain.engine.worker", str(path)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("stage") == stage and event["message"].startswith(prefix):
                break
        asked = time.monotonic()
        cancel.touch()
        rest, _ = proc.communicate(timeout=60)
        took = time.monotonic() - asked
        cancel.unlink()
        last = json.loads(rest.splitlines()[-1])
        print(f"cancel at {stage} ({event['message']}): exit {proc.returncode} in {took:.2f} s")
        FAULTS.append((f"cancel at {event['message']} of 1000 frames", f"exit {proc.returncode} in {took:.2f} s",
                       bool(leftovers(tmp_path / "out"))))
        assert proc.returncode == 2 and last.get("cancelled") and took < 2.0
        assert leftovers(tmp_path / "out") == []
