"""Footage readers on the real clips of the data folder: counts, rates, sizes, pixels, masks."""

import sys
from fractions import Fraction

import numpy as np
import pytest

from tests.conftest import DATA

av = pytest.importorskip("av", reason="no PyAV in a Blender-only venv")
Image = pytest.importorskip("PIL.Image", reason="no Pillow in this venv")

from blender_stchain.contracts.errors import FootageError
from blender_stchain.contracts.frames import write_frames
from blender_stchain.engine.footage import MASK_THRESHOLD, FootageWarning, open_footage
from blender_stchain.engine.footage.pixels import _area_axis

VIDEOS = DATA / "videos"


@pytest.fixture(scope="module")
def teddy():
    with open_footage(VIDEOS / "teddy.mp4") as f:
        yield f


@pytest.fixture(scope="module")
def bear_frames():
    """Every bear frame decoded independently by PyAV: the reference for our reader."""
    with av.open(str(VIDEOS / "bear.mp4")) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_teddy_counts_decoded_frames_and_non_integer_rate(teddy):
    # the container says 142 frames; one packet is discarded by the edit list, 141 decode
    assert teddy.count == 141 and teddy.frame_numbers == tuple(range(1, 142))
    assert teddy.fps == Fraction(1454080, 72773) and teddy.fps.denominator != 1
    steps = np.diff(teddy.timestamps)
    print(f"teddy: {teddy.count} frames, fps {teddy.fps} = {float(teddy.fps):.4f}, "
          f"dt {steps.min():.4f}-{steps.max():.4f} s")
    assert teddy.timestamps[0] == 0.0 and np.allclose(steps, 512 / 10240)
    assert teddy.source_size == teddy.size == (368, 480)  # portrait, below max_side: untouched
    rgb, mask = teddy.read(140)
    assert rgb.shape == (480, 368, 3) and rgb.dtype == np.uint8 and mask is None


@pytest.mark.parametrize("name, count, fps, size", [("lifting1_fg", 300, 30, (512, 512)), ("bear", 82, 30, (854, 480))])
def test_video_counts_rates_sizes(name, count, fps, size):
    with open_footage(VIDEOS / f"{name}.mp4") as f:
        assert (f.count, f.fps, f.size, f.kind, f.mask_kind) == (count, Fraction(fps), size, "video", "none")
        assert isinstance(f.fps, Fraction)
        rgb, masks = f.read_range(count - 3, count)
        assert rgb.shape == (3, size[1], size[0], 3) and masks is None


def test_video_reads_match_pyav_in_any_order(bear_frames):
    with open_footage(VIDEOS / "bear.mp4") as f:
        for k in [40, 41, 3, 81, 0, 60, 59, 12]:  # forward, backward (seek), last, first
            rgb, _ = f.read(k)
            assert np.array_equal(rgb, bear_frames[k]), k


def test_video_frame_range_is_one_based_inclusive(bear_frames):
    with open_footage(VIDEOS / "bear.mp4", frames=(10, 20)) as f:
        assert f.count == 11 and f.frame_numbers == tuple(range(10, 21))
        assert f.timestamps[0] == pytest.approx(9 / 30)
        rgb, _ = f.read_range(0, f.count)
        assert all(np.array_equal(rgb[i], bear_frames[9 + i]) for i in range(11))


def test_rgba_alpha_becomes_the_mask():
    folder = DATA / "rgba_frames" / "davis_camel"
    with pytest.warns(FootageWarning, match=r"touches the frame border"):
        f = open_footage(folder)
    with f:
        assert (f.count, f.kind, f.mask_kind, f.size, f.fps) == (16, "images", "alpha", (512, 512), None)
        alphas = [np.asarray(Image.open(folder / f"{n:02d}.png"))[..., 3] for n in range(16)]
        truth = np.array([(a > 127).mean() for a in alphas])
        print(f"camel: object share {f.mask_area.min():.3f}-{f.mask_area.max():.3f} (alpha > 0: "
              f"{min((a > 0).mean() for a in alphas):.3f}-{max((a > 0).mean() for a in alphas):.3f}); {f.warnings}")
        np.testing.assert_allclose(f.mask_area, truth, atol=1e-6)
        edge = [n + 1 for n, a in enumerate(alphas) if (np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]) > 127).any()]
        assert edge == [9, 10, 11] and f.warnings[0].endswith("on frames 9-11")  # 1-based: files 08-10.png
        rgba = np.asarray(Image.open(folder / "07.png"))
        rgb, mask = f.read(7)
        assert np.array_equal(rgb, rgba[..., :3]) and mask.dtype == np.float32
        assert np.array_equal(mask, rgba[..., 3].astype(np.float32) / 255)


def test_mask_folder_pairs_by_name():
    with open_footage(DATA / "horsejump_gt" / "video", masks=DATA / "horsejump_gt" / "masks") as f:
        assert (f.count, f.mask_kind, f.size) == (50, "folder", (854, 480))
        print(f"horsejump: object share {f.mask_area.min():.4f}-{f.mask_area.max():.4f}")
        assert 0.022 < f.mask_area.min() and f.mask_area.max() < 0.062  # README: 2.3-6.1 %
        rgb, masks = f.read_range(20, 22)
        truth = np.asarray(Image.open(DATA / "horsejump_gt" / "masks" / "00021.png"))
        assert np.array_equal(masks[1] > MASK_THRESHOLD, truth > 127)
        assert np.array_equal(rgb[1], np.asarray(Image.open(DATA / "horsejump_gt" / "video" / "00021.jpg")))
        assert np.array_equal(f.read_masks(20, 22), masks)  # the crop's masks, without decoding frames


def test_a_frames_folder_of_a_range_takes_the_whole_clips_masks(tmp_path):
    """What Blender exports for frames 3-5 pairs with the clip's 50 masks as the clip itself does: by the
    image names it records, else mask n (in order) for frame n; a folder of neither count is refused."""
    horse = DATA / "horsejump_gt"
    frames = [np.asarray(Image.open(horse / "video" / f"{n:05d}.jpg")) for n in range(2, 5)]  # frames 3-5
    names = [f"{n:05d}" for n in range(2, 5)]
    write_frames(tmp_path / "named", iter(frames), 30, first_frame=3, clip_frames=50, names=names)
    write_frames(tmp_path / "numbered", iter(frames), 30, first_frame=3, clip_frames=50)
    truth = [np.asarray(Image.open(horse / "masks" / f"{n:05d}.png")) > 127 for n in range(2, 5)]
    for folder in ("named", "numbered"):
        with open_footage(tmp_path / folder, masks=horse / "masks") as f:
            assert (f.count, f.frame_numbers, f.mask_kind) == (3, (3, 4, 5), "folder")
            masks = f.read_masks(0, 3) > MASK_THRESHOLD
            assert all(np.array_equal(m, t) for m, t in zip(masks, truth)), folder
            assert not np.array_equal(masks[0], masks[2])  # the horse moves: a shifted pairing would show
    few = tmp_path / "few"
    few.mkdir()
    for n in range(2, 6):
        (few / f"{n:05d}.png").write_bytes((horse / "masks" / f"{n:05d}.png").read_bytes())
    with pytest.raises(FootageError, match=r"4 mask images .* for 3 footage frames; give exactly one mask per "
                                           r"frame \(or 50, one per frame of the whole clip\)"):
        open_footage(tmp_path / "numbered", masks=few)


def test_a_new_mask_source_is_one_class_and_one_registry_line(monkeypatch, tmp_path):
    """The seam of engine/footage/masks.py: a source reading a (T, H, W) uint8 .npy stack, added to
    MASK_SOURCES, serves open_footage exactly as the mask folder it was made from."""
    from blender_stchain.engine.footage import masks as mask_sources

    class MaskStack(mask_sources.MaskSource):
        kind = "stack"

        @classmethod
        def takes(cls, masks, frames):
            return masks is not None and masks.suffix == ".npy"

        def read(self, k):
            return np.load(self.path, mmap_mode="r")[k].astype(np.float32) / 255

    horse = DATA / "horsejump_gt"
    files = sorted((horse / "masks").glob("*.png"))[:6]
    np.save(tmp_path / "stack.npy", np.stack([np.asarray(Image.open(f).convert("L")) for f in files]))
    monkeypatch.setattr(mask_sources, "MASK_SOURCES", (MaskStack, *mask_sources.MASK_SOURCES))
    with open_footage(horse / "video", masks=tmp_path / "stack.npy", frames=(1, 6)) as stack, \
            open_footage(horse / "video", masks=horse / "masks", frames=(1, 6)) as folder:
        assert (stack.mask_kind, folder.mask_kind) == ("stack", "folder")
        np.testing.assert_array_equal(stack.mask_area, folder.mask_area)
        assert np.array_equal(stack.read_range(2, 4)[1], folder.read_range(2, 4)[1])
        assert 0.02 < stack.mask_area.min()


def test_downscale_keeps_footage_pixels(bear_frames):
    with open_footage(VIDEOS / "bear.mp4", frames=(5, 5), max_side=427) as f:
        assert f.source_size == (854, 480) and f.size == (427, 240)
        assert f.scale == (0.5, 0.5)
        np.testing.assert_allclose(f.to_footage_pixels([[427, 240], [10.5, 3]]), [[854, 480], [21, 6]])
        rgb, _ = f.read(0)
        # an exact 2x box average of the full-size frame
        expect = bear_frames[4].astype(np.float64).reshape(240, 2, 427, 2, 3).mean(axis=(1, 3))
        err = np.abs(rgb - expect).max()
        print(f"2x area downscale: max abs error {err:.3f} (uint8 rounding)")
        assert err <= 0.5


def test_area_resample_preserves_mean_and_blocks():
    rng = np.random.default_rng(3)
    a = rng.random((37, 53))
    for n in (1, 5, 17, 36):  # non-integer factors
        out = _area_axis(a, n, 0)
        assert out.shape == (n, 53)
        np.testing.assert_allclose(out.mean(axis=0), a.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(_area_axis(np.full((9, 2), 7.0), 4, 0), 7.0)
    b = rng.random((12, 8))
    np.testing.assert_allclose(_area_axis(b, 4, 0), b.reshape(4, 3, 8).mean(axis=1))


def test_integer_pixels_resample_to_the_same_numbers_as_float64_copies():
    """Integer pixels are summed in integers (exact): the result must equal the float64 path bit for bit,
    for 8- and 16-bit pixels, down- and upscaling, along both axes, and where int32 could overflow."""
    rng = np.random.default_rng(4)
    cases = [(rng.integers(0, 256, (2160, 7, 3), dtype=np.uint8), (576, 1000, 2160, 3000)),
             (rng.integers(0, 65536, (9, 41), dtype=np.uint16), (4, 9, 13)),
             (rng.integers(0, 65536, (40_000, 2), dtype=np.uint16), (1024,))]  # 40k x 65535 > 2^31
    for img, sizes in cases:
        for n in sizes:
            for axis in (0, 1):
                m = n if axis == 0 else max(1, n * img.shape[1] // img.shape[0])
                assert np.array_equal(_area_axis(img, m, axis), _area_axis(img.astype(np.float64), m, axis))


def test_images_sort_naturally(tmp_path):
    for n in (1, 2, 10):
        Image.fromarray(np.full((4, 6, 3), n * 20, np.uint8)).save(tmp_path / f"f{n}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    with open_footage(tmp_path) as f:
        assert f.count == 3
        assert [int(f.read(i)[0][0, 0, 0]) for i in range(3)] == [20, 40, 200]


@pytest.mark.filterwarnings("ignore::blender_stchain.engine.footage.FootageWarning")  # crop cuts the camel
def test_blender_frames_folder_needs_neither_pillow_nor_av(tmp_path, monkeypatch):
    camel = DATA / "rgba_frames" / "davis_camel"
    frames = [np.asarray(Image.open(camel / f"{n:02d}.png"))[:200, :300] for n in range(3)]
    write_frames(tmp_path / "job", iter(frames), fps=Fraction(24000, 1001), first_frame=7)
    monkeypatch.setitem(sys.modules, "PIL", None)  # an install without the optional extras
    monkeypatch.setitem(sys.modules, "av", None)
    with open_footage(tmp_path / "job", frames=(8, 9)) as f:
        assert (f.kind, f.count, f.frame_numbers, f.fps, f.size, f.mask_kind) == (
            "frames", 2, (8, 9), Fraction(24000, 1001), (300, 200), "alpha")
        rgb, masks = f.read_range(0, 2)
        assert np.array_equal(rgb[1], frames[2][..., :3])
        assert np.array_equal(masks[0], frames[1][..., 3] / np.float32(255))


@pytest.mark.parametrize("degrees", [90, -90])
def test_phone_rotation_metadata_turns_frames_upright(tmp_path, bear_frames, degrees):
    clip = tmp_path / f"rot{degrees}.mp4"
    with av.open(str(VIDEOS / "bear.mp4")) as src, av.open(str(clip), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        stream.set_display_rotation(degrees)  # counter-clockwise, as a phone writes it; pixels untouched
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    with open_footage(clip, frames=(30, 31)) as f:
        assert (f.count, f.rotation, f.source_size, f.size) == (2, degrees % 360, (480, 854), (480, 854))
        rgb, _ = f.read(1)
        assert np.array_equal(rgb, np.rot90(bear_frames[30], degrees // 90))
