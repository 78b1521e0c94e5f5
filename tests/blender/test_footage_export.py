"""Blender-side footage export: frames decoded by Blender, written as the worker's .npy format."""

import json
import subprocess
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain.bl import footage  # noqa: E402
from blender_stchain.contracts.errors import FootageError  # noqa: E402
from tests.blender.conftest import data_snapshot  # noqa: E402
from tests.blender.workers import stub_env  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402


def test_rgba_images_exact(scene, tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="no Pillow in this venv")

    before = data_snapshot()
    src = footage.probe(str(DATA / "rgba_frames" / "davis_camel"))
    assert (src.kind, src.count, src.size) == ("images", 16, (512, 512))
    out = footage.export(src, (2, 4), tmp_path / "frames", mask="alpha")
    meta = json.loads((out / "meta.json").read_text())
    assert meta == {"format": "blender_stchain.frames", "version": 1, "fps": [24, 1], "frame_numbers": [2, 3, 4],
                    "clip_frames": 16, "names": ["01", "02", "03"]}  # the clip a whole masks folder belongs to
    for n in (2, 3, 4):
        got = np.load(out / "frames" / f"{n:06d}.npy")
        ref = np.asarray(Image.open(src.files[n - 1]))
        assert got.dtype == np.uint8 and got.shape == (512, 512, 4)
        np.testing.assert_array_equal(got, ref)
    assert data_snapshot() == before


def test_video_frames_match_pyav(scene, tmp_path):
    av = pytest.importorskip("av", reason="no PyAV in a Blender-only venv")
    before = data_snapshot()
    src = footage.probe(str(DATA / "videos" / "bear.mp4"))
    assert (src.kind, src.count, src.size, src.fps) == ("video", 82, (854, 480), 30.0)
    out = footage.export(src, (1, 3), tmp_path / "frames")
    with av.open(src.path) as c:
        ref = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), c.decode(video=0))]
    for i in range(3):
        got = np.load(out / "frames" / f"{i + 1:06d}.npy")
        diff = np.abs(got.astype(int) - ref[i])
        print(f"frame {i + 1}: mean |Blender - PyAV| {diff.mean():.2f}, max {diff.max()}")
        assert got.shape == (480, 854, 3) and diff.mean() < 3.0
    assert sorted(p.name for p in out.iterdir()) == ["frames", "meta.json"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000001.npy", "000002.npy", "000003.npy"]
    assert json.loads((out / "meta.json").read_text())["fps"] == [30, 1]
    assert data_snapshot() == before


def test_chroma_key_and_errors(scene, tmp_path):
    src = footage.probe(str(DATA / "videos" / "lifting1_fg.mp4"))
    out = footage.export(src, (1, 1), tmp_path / "frames", mask="chroma")
    rgba = np.load(out / "frames" / "000001.npy")
    share = float((rgba[..., 3] == 255).mean())
    print(f"chroma key on the white-background lifter: {share:.1%} object")
    # the person on white: a minority of the frame, the border itself is background
    assert set(np.unique(rgba[..., 3])) == {0, 255} and 0.02 < share < 0.5 and rgba[0, :, 3].max() == 0
    with pytest.raises(FootageError, match=r"frame range 1:400 is outside the footage \(1-300\)"):
        footage.export(src, (1, 400), tmp_path / "x")
    with pytest.raises(FootageError, match="does not exist"):
        footage.probe(str(tmp_path / "missing.mp4"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FootageError, match="holds no images"):
        footage.probe(str(empty))


def test_stchain_run_script_with_pypi_bpy(tmp_path):
    """scripts/stchain_run.py is what `blender -b -P` runs; with PyPI bpy it runs under plain python."""
    env = stub_env("ok")
    env["STCHAIN_WORKER_MODULE"] = "stub_worker"
    env["HOME"] = str(tmp_path)
    out = tmp_path / "run.blend"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "stchain_run.py"), "--", "--footage",
                           str(DATA / "rgba_frames" / "davis_camel"), "--frames", "1:2", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file()
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "stchain_run.py"), "--", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: the following arguments are required: --footage (see --help)"]


def square_mask(name, x0):
    mask = bpy.data.masks.new(name)
    spline = mask.layers.new(name="outline").splines.new()
    spline.points.add(4)
    spline.use_cyclic = True
    for p, co in zip(spline.points, [(x0, 0.3), (x0 + 0.2, 0.3), (x0 + 0.2, 0.5), (x0, 0.5)]):
        p.co = p.handle_left = p.handle_right = co
    return mask


def test_blender_mask_becomes_alpha(scene, tmp_path):
    """A Mask datablock, rendered by Blender's compositor at footage size, becomes the alpha channel."""
    left, right = square_mask("left", 0.2), square_mask("right", 0.6)
    before = data_snapshot()
    src = footage.probe(str(DATA / "rgba_frames" / "davis_camel"))
    found = {}
    for m in (left, right):
        out = footage.export(src, (1, 2), tmp_path / m.name, mask="mask", blender_mask=m)
        alpha = np.load(out / "frames" / "000002.npy")[..., 3]
        found[m.name] = (float((alpha == 255).mean()), float(np.nonzero(alpha == 255)[1].mean()) / alpha.shape[1])
        assert set(np.unique(alpha)) == {0, 255}
    print("mask (area share, centre x):", found)
    assert all(0.01 < area < 0.2 for area, _ in found.values())
    assert found["left"][1] < 0.5 < found["right"][1]
    assert data_snapshot() == before
    with pytest.raises(FootageError, match="needs a Blender Mask"):
        footage.export(src, (1, 1), tmp_path / "x", mask="mask")


def test_every_mask_source_exports_and_luma_keys_a_dark_background(scene, tmp_path):
    """One exporter per source of contracts.masks; none drops the 4th channel; the luma key finds the
    camel composited over black (its true alpha known) and rejects an unknown source by name."""
    from blender_stchain.contracts.masks import MASK_SOURCE_NAMES

    Image = pytest.importorskip("PIL.Image", reason="no Pillow in this venv")
    assert tuple(footage.MASK_EXPORTS) == MASK_SOURCE_NAMES
    rgba = np.asarray(Image.open(DATA / "rgba_frames" / "davis_camel" / "05.png"))
    dark = (rgba[..., :3] * (rgba[..., 3:] > 127)).astype(np.uint8)  # the object on black
    (tmp_path / "dark").mkdir()
    Image.fromarray(dark).save(tmp_path / "dark" / "0001.png")
    src = footage.probe(str(tmp_path / "dark"))
    plain = np.load(footage.export(src, None, tmp_path / "none", mask="none") / "frames" / "000001.npy")
    keyed = np.load(footage.export(src, None, tmp_path / "luma", mask="luma") / "frames" / "000001.npy")
    assert plain.shape == (512, 512, 3) and np.array_equal(plain, dark)
    truth, found = rgba[..., 3] > 127, keyed[..., 3] == 255
    iou = (truth & found).sum() / (truth | found).sum()
    print(f"luma key on the camel over black: IoU {iou:.3f} with its alpha")
    assert iou > 0.9 and not (found & ~truth).any()  # a black pixel is never the object
    with pytest.raises(FootageError, match="mask source 'bogus' is not one of none, alpha, segment, mask, luma, chroma"):
        footage.export(src, None, tmp_path / "x", mask="bogus")


def test_mask_choice_keeps_the_number_saved_files_hold(registered):
    """.blend files store an enum choice as its number: the numbers of the first release stay."""
    props = registered.stchain
    for number, choice in enumerate(["NONE", "ALPHA", "MASK", "LUMA", "CHROMA", "SEGMENT"]):
        props.mask = choice
        assert props["mask"] == number
