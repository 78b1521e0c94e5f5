"""The benchmark reader: our layout, ActionBench's, video + masks footage, and its one-line errors."""

import numpy as np
import pytest
from PIL import Image

from blender_stchain.contracts.settings import preset
from blender_stchain.evaluation.bench import read_bench, write_clip
from blender_stchain.evaluation.errors import EvalError
from blender_stchain.evaluation.oracle import oracle_result


def _png(folder, n=2):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGBA", (8, 8)).save(folder / f"{i:02d}.png")


def _ours(folder, footage="png"):
    V = np.zeros((2, 4, 3), np.float32)
    write_clip(folder, folder.name, V, [[0, 1, 2]], V, np.eye(3), np.tile(np.eye(4), (2, 1, 1)), (8, 8), [0],
               np.zeros((2, 1, 2)), np.ones((2, 1)), {"camera": "static"})
    if footage == "png":
        _png(folder / "rgba")
    else:
        (folder / "clip.mp4").write_bytes(b"")  # located, not decoded, by the reader
        (folder / "masks").mkdir()


def test_reads_ours_actionbench_and_video_clips(tmp_path):
    _ours(tmp_path / "a_ours")
    _ours(tmp_path / "b_video", footage="video")
    ab = tmp_path / "c_uid"
    ab.mkdir()
    np.save(ab / "surfaces.npy", np.random.default_rng(0).normal(size=(16, 50, 6)).astype(np.float32))
    _png(ab / "images", 16)
    (tmp_path / "not_a_clip").mkdir()
    ours, video, uid = read_bench(tmp_path)
    assert ours.footage == tmp_path / "a_ours" / "rgba" and ours.masks is None and ours.has_camera
    assert video.footage.name == "clip.mp4" and video.masks == tmp_path / "b_video" / "masks"
    assert uid.footage == ab / "images" and uid.surfaces.shape == (16, 50, 3) and uid.frames == 16
    assert not uid.has_camera and not uid.has_tracks
    assert [c.name for c in read_bench(tmp_path, limit=1)] == ["a_ours"]
    with pytest.raises(EvalError, match="--oracle needs a GT mesh"):
        oracle_result(uid, preset("fast"))


def test_errors_name_the_next_step(tmp_path):
    with pytest.raises(EvalError, match="make-bench"):
        read_bench(tmp_path / "nowhere")
    bad = tmp_path / "uid"
    bad.mkdir()
    np.save(bad / "surfaces.npy", np.zeros((16, 5)))
    with pytest.raises(EvalError, match=r"expected \(T, N, 6\)"):
        read_bench(tmp_path)
    np.save(bad / "surfaces.npy", np.zeros((16, 5, 6)))
    with pytest.raises(EvalError, match="no footage"):
        read_bench(tmp_path)
