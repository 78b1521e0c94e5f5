"""Bad and unusual footage, made by the tests from the real clips: one clear FootageError each,
naming the path and the frames, or a correct conversion.

``INPUTS_TRIED`` lists every input a test fed to ``open_footage`` as (input, outcome) with outcome
"error", "warning" or "read" (``helpers.py``); the reliability conftest counts it in the summary line.
"""

import shutil
import struct
import sys
import zlib
from fractions import Fraction

import numpy as np
import pytest

from tests.conftest import DATA
from tests.reliability.helpers import INPUTS_TRIED

av = pytest.importorskip("av", reason="no PyAV in a Blender-only venv")
Image = pytest.importorskip("PIL.Image", reason="no Pillow in this venv")

from blender_stchain.contracts.errors import FootageError  # noqa: E402
from blender_stchain.contracts.frames import write_frames  # noqa: E402
from blender_stchain.engine.footage import FootageWarning, open_footage

VIDEOS = DATA / "videos"
HORSE = DATA / "horsejump_gt"


def refused(what, path, match, **kw) -> str:
    """open_footage must raise one FootageError line matching ``match``; returns the message."""
    with pytest.raises(FootageError, match=match) as e:
        open_footage(path, **kw)
    message = str(e.value)
    print(f"{what}: {message}")
    assert "\n" not in message
    INPUTS_TRIED.append((what, "error"))
    return message


def accepted(what, path, **kw):
    footage = open_footage(path, **kw)
    INPUTS_TRIED.append((what, "warning" if footage.warnings else "read"))
    return footage


def horse_clip(folder, n=6, masks=True):
    """A short real clip: the first n horsejump frames (and masks) copied into folder."""
    (folder / "video").mkdir(parents=True)
    for k in range(n):
        shutil.copy(HORSE / "video" / f"{k:05d}.jpg", folder / "video")
    if masks:
        (folder / "masks").mkdir()
        for k in range(n):
            shutil.copy(HORSE / "masks" / f"{k:05d}.png", folder / "masks")
    return folder / "video", folder / "masks"


def png16(path, pixels: np.ndarray) -> None:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit RGB)."""
    h, w, c = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


# ---------------------------------------------------------------------------- files and videos


def test_missing_empty_and_unreadable_paths(tmp_path):
    refused("missing path", tmp_path / "nope.mp4", r"footage not found: .*nope\.mp4")
    (tmp_path / "empty").mkdir()
    refused("empty folder", tmp_path / "empty", r"footage folder .*empty holds no images")
    (tmp_path / "zero.mp4").write_bytes(b"")
    refused("zero-byte video", tmp_path / "zero.mp4", r"empty \(0 bytes\): .*zero\.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    refused(
        "text named .mp4", tmp_path / "text.mp4",
        r"cannot read video .*text\.mp4: truncated, damaged or not a video",
    )


def test_truncated_videos(tmp_path):
    data = (VIDEOS / "bear.mp4").read_bytes()
    cut = tmp_path / "bear_cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # index (moov) at the end: nothing opens
    refused("truncated mp4 (index at end)", cut, r"cannot read video .*bear_cut\.mp4: truncated")
    # index first (faststart), then cut: the first frames decode, then decoding fails
    fast = tmp_path / "bear_fast.mp4"
    with av.open(str(VIDEOS / "bear.mp4")) as src, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = fast.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    fast.write_bytes(data[: len(data) // 2])
    message = refused("truncated mp4 (index first)", fast, r"video .*bear_fast\.mp4 is truncated or damaged")
    after = int(message.split("after frame ")[1].split()[0])
    assert 20 < after < 60  # half the bytes of an 82-frame clip


def test_frame_range_outside_the_clip():
    refused(
        "range past the end", VIDEOS / "bear.mp4",
        r"frame range 70-90 is outside .*bear\.mp4, which has frames 1-82",
        frames=(70, 90),
    )
    refused("range from 0", HORSE / "video", r"frame range 0-5 is outside .*, which has frames 1-50", frames=(0, 5))
    refused("reversed range", HORSE / "video", r"frame range 9-3 is outside", frames=(9, 3))


def test_zero_byte_and_truncated_images(tmp_path):
    video, _ = horse_clip(tmp_path, n=4, masks=False)
    (video / "00004.png").write_bytes(b"")
    refused("zero-byte png", video, r"cannot read frame 5 \(.*00004\.png\): the file is empty \(0 bytes\)")
    (video / "00004.png").unlink()
    Image.open(video / "00003.jpg").save(video / "00004.png")
    png = (video / "00004.png").read_bytes()
    (video / "00004.png").write_bytes(png[: len(png) // 3])  # header intact, pixels cut off
    footage = accepted("truncated png (header intact)", video)
    assert footage.count == 5 and footage.read(3)[0].shape == (480, 854, 3)
    with pytest.raises(FootageError, match=r"cannot read frame 5 \(.*00004\.png\): damaged, truncated"):
        footage.read(4)


def test_frames_of_varying_size(tmp_path):
    video, _ = horse_clip(tmp_path, n=5, masks=False)
    for name in ("00002.jpg", "00004.jpg"):
        Image.open(video / name).resize((640, 360)).save(video / name)
    refused(
        "frames of varying size", video,
        r"frames differ in size .*: frames 3, 5 \(e\.g\. 00002\.jpg, 640x360\) differ from frame 1 \(854x480\)",
    )


def test_non_ascii_paths(tmp_path):
    folder = tmp_path / "Füßé 日本語 клип"
    video, masks = horse_clip(folder, n=3)
    footage = accepted("non-ASCII image folder", video, masks=masks)
    assert footage.count == 3 and footage.read(2)[1].shape == (480, 854)
    clip = folder / "медведь.mp4"
    shutil.copy(VIDEOS / "bear.mp4", clip)
    with accepted("non-ASCII video path", clip, frames=(80, 82)) as f:
        assert f.count == 3 and f.read(2)[0].shape == (480, 854, 3)
    refused("non-ASCII missing path", folder / "nicht da", r"footage not found: .*Füßé 日本語 клип/nicht da")


def test_missing_optional_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    refused("video without PyAV", VIDEOS / "bear.mp4", r"needs PyAV: pip install blender_stchain\[video\]")
    monkeypatch.setitem(sys.modules, "PIL", None)
    refused("images without Pillow", HORSE / "video", r"needs Pillow: pip install blender_stchain\[images\]")


def test_broken_frames_folders(tmp_path):
    frames = [np.asarray(Image.open(HORSE / "video" / f"{k:05d}.jpg")) for k in range(3)]
    job = write_frames(tmp_path / "job", frames, fps=25)
    (job / "meta.json").unlink()
    refused("frames folder without meta.json", job, r"frames folder .*job has no meta.json \(incomplete write\)")
    job = write_frames(tmp_path / "job2", frames, fps=None)
    npy = job / "frames" / "000002.npy"
    npy.write_bytes(npy.read_bytes()[:5000])
    refused("truncated .npy frame", job, r"cannot read frame 2 \(.*000002\.npy\): truncated")
    npy.unlink()
    refused("missing .npy frame", job, r"frame 2 is missing: .*000002\.npy")


# ---------------------------------------------------------------------------- conversions


def test_grayscale_jpeg_and_16_bit_pngs(tmp_path):
    gray = Image.open(HORSE / "video" / "00000.jpg").convert("L")
    gray.save(tmp_path / "a_gray.jpg", quality=95)
    rng = np.random.default_rng(1)
    g16 = rng.integers(0, 65536, (480, 854, 1), dtype=np.uint16)
    rgb16 = rng.integers(0, 65536, (480, 854, 3), dtype=np.uint16)
    png16(tmp_path / "b_gray16.png", g16)
    png16(tmp_path / "c_rgb16.png", rgb16)
    with accepted("grayscale JPEG + 16-bit PNGs", tmp_path) as f:
        rgb, _ = f.read(0)
        decoded = np.asarray(Image.open(tmp_path / "a_gray.jpg"))
        assert rgb.shape == (480, 854, 3) and all(np.array_equal(rgb[..., c], decoded) for c in range(3))
        err_g = np.abs(f.read(1)[0].astype(float) - g16 / 257.0).max()
        err_c = np.abs(f.read(2)[0].astype(float) - rgb16 / 257.0).max()
        print(f"16-bit -> 8-bit: gray max error {err_g:.3f}, rgb max error {err_c:.3f} (8-bit steps)")
        assert err_g <= 0.5 and err_c < 1.0  # rounding, resp. Pillow's truncation to the high byte


def test_4k_and_portrait_frames_are_downscaled(tmp_path):
    horse = np.asarray(Image.open(HORSE / "video" / "00010.jpg"))
    big = np.repeat(np.repeat(horse, 4, axis=0), 4, axis=1)[:2160, :3840]  # 3416x1920 -> pad to 4K
    big = np.pad(big, ((0, 2160 - big.shape[0]), (0, 3840 - big.shape[1]), (0, 0)), mode="edge")
    Image.fromarray(big).save(tmp_path / "uhd.png", compress_level=1)
    with accepted("4K PNG frame", tmp_path / "uhd.png") as f:
        assert f.source_size == (3840, 2160) and f.size == (1024, 576)
        rgb, _ = f.read(0)
        np.testing.assert_allclose(f.to_footage_pixels([[1024, 576]]), [[3840, 2160]])
        drift = abs(rgb.mean() - big.mean())
        print(f"4K -> {f.size}: scale {f.scale}, mean intensity drift {drift:.3f}")
        assert drift < 0.5
    portrait = np.ascontiguousarray(np.transpose(big[:, :1920], (1, 0, 2))[:1920, :1080])
    write_frames(tmp_path / "portrait", [portrait, portrait], fps=Fraction(30000, 1001))
    with accepted("portrait 1080x1920 frames folder", tmp_path / "portrait") as f:
        assert f.source_size == (1080, 1920) and f.size == (576, 1024) and f.scale == (576 / 1080, 1024 / 1920)
        assert f.read(1)[0].shape == (1024, 576, 3)


# ---------------------------------------------------------------------------- masks


def test_masks_missing_or_wrong_count(tmp_path):
    video, masks = horse_clip(tmp_path, n=6)
    refused("masks path missing", video, r"masks not found: .*nomasks", masks=tmp_path / "nomasks")
    (masks / "00003.png").unlink()
    (masks / "00005.png").unlink()
    refused(
        "two masks missing", video,
        r"masks: 4 mask images in .* for 6 footage frames; no mask of the same name for frames 4, 6",
        masks=masks,
    )
    refused(
        "mask count vs video", VIDEOS / "bear.mp4",
        r"masks: 4 mask images in .* for 82 footage frames; give exactly one",
        masks=masks,
    )
    empty = tmp_path / "nothing"
    empty.mkdir()
    refused("empty mask folder", video, r"masks folder .*nothing holds no images", masks=empty)


def test_masks_of_the_wrong_size(tmp_path):
    video, masks = horse_clip(tmp_path, n=6)
    for name in ("00001.png", "00002.png"):
        Image.open(masks / name).resize((427, 240)).save(masks / name)
    refused(
        "masks of the wrong size", video,
        r"wrong size on frames 2-3: 427x240 instead of the footage's 854x480",
        masks=masks,
    )
    footage = accepted("wrong-size masks outside the range", video, masks=masks, frames=(4, 6))
    assert footage.count == 3


def test_a_single_mask_image_is_refused():
    """The mask of one frame is wrong for the other frames of a moving object: a folder is asked for."""
    refused(
        "single mask image instead of a folder", VIDEOS / "apple.mp4",
        r"masks .*apple_mask.png is a single image; give a folder with one mask image per footage frame",
        masks=VIDEOS / "apple_mask.png",
    )


def test_object_leaves_the_frame_on_some_frames(tmp_path):
    video, masks = horse_clip(tmp_path, n=6)
    blank = np.zeros((480, 854), np.uint8)
    Image.fromarray(blank).save(masks / "00004.png")
    with pytest.warns(FootageWarning, match=r"leaves the picture \(empty mask\) on frame 5$"):
        footage = accepted("mask empty on one frame", video, masks=masks)
    assert footage.mask_area[4] == 0 and footage.mask_area[3] > 0.02
    for name in ("00000.png", "00001.png", "00002.png"):
        Image.fromarray(blank).save(masks / name)
    refused(
        "masks empty on most frames", video,
        r"mask is empty on frames 1-3, 5; the object is visible on only 2 of 6",
        masks=masks,
    )


def test_object_fills_the_frame(tmp_path):
    video, masks = horse_clip(tmp_path, n=5)
    for name in ("00001.png", "00003.png"):
        Image.fromarray(np.full((480, 854), 255, np.uint8)).save(masks / name)
    refused("masks covering the whole frame", video, r"object fills the whole frame on frames 2, 4", masks=masks)


def test_rgba_frames_with_opaque_alpha_carry_no_mask(tmp_path):
    for k in range(3):
        Image.open(HORSE / "video" / f"{k:05d}.jpg").convert("RGBA").save(tmp_path / f"{k}.png")
    with accepted("opaque RGBA frames", tmp_path) as f:
        assert f.mask_kind == "none" and f.read(0)[1] is None and f.read(0)[0].shape == (480, 854, 3)


def test_openexr_frames_are_named_as_unsupported(tmp_path):
    (tmp_path / "0001.exr").write_bytes(b"\x76\x2f\x31\x01" + bytes(64))  # OpenEXR magic, Pillow has no reader
    refused("OpenEXR frame", tmp_path, r"cannot read frame 1 \(.*0001\.exr\): this Pillow cannot read OpenEXR; convert")
