"""A 1,000-frame clip (generated: a deforming blob on white, written in the frames format Blender
hands over) runs to the end with tiny weights, with memory flat in clip length."""

import numpy as np
import pytest

from blender_stchain.engine.footage import write_frames
from blender_stchain.engine.result import load_result

from ..engine.test_pipeline import peak_rss_mb
from .conftest import FAULTS


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
    """Windows (16 frames) and camera chunks (96 frames) bound the working set: past one camera
    chunk, the peak must not grow with the clip."""
    short = peak_rss_mb(200, tiny_weights, tmp_path, footage=long_clip)
    long = peak_rss_mb(1000, tiny_weights, tmp_path, footage=long_clip)
    r = load_result(tmp_path / "m1000.safetensors")
    assert list(r.frame_numbers) == list(range(1, 1001)) and np.isfinite(r.vertices).all()
    print(f"1000 frames: peak RSS {long:.0f} MB vs {short:.0f} MB for 200 frames ({long / short - 1:+.1%})")
    FAULTS.append(("1000-frame clip", f"peak RSS {long:.0f} MB vs {short:.0f} MB", False))
    assert long <= 1.25 * short  # measured +12% for 5x the frames (issue 6 note: the rest is not yet found)
