"""The focal length the user or the footage knows: ``--focal-mm`` / ``--sensor-mm``, the footage's
own 35 mm equivalent (EXIF of images written by Pillow, QuickTime keys of a movie written by FFmpeg
the way iPhones tag theirs), and which one wins."""

from __future__ import annotations

import math
import struct

import av
import pytest

from blender_stchain.contracts.errors import UsageError
from blender_stchain.contracts.options import parse_job
from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.camera.stage import known_focal
from blender_stchain.engine.footage import open_footage
from blender_stchain.lens import image_lens, quicktime_keys, video_lens
from tests.conftest import DATA
from tests.engine.lens_footage import APPLE_KEY, frames_with_exif, tagged_movie

@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_35mm_equivalent_of_an_image_sequence(tmp_path, suffix):
    folder = frames_with_exif(tmp_path / "frames", suffix, 28)
    lens = image_lens(folder / f"000{suffix}")
    assert lens.focal_35mm == 28.0 and lens.tag == "EXIF 35mm equivalent"
    clip = open_footage(folder)
    try:
        focal, source = known_focal(Settings(), clip)
    finally:
        clip.close()
    # 28 mm on the 43.27 mm diagonal of a 36 x 24 mm frame = the same angle on the 96 x 64 px diagonal
    assert focal == pytest.approx(28.0 * math.sqrt(96**2 + 64**2) / math.sqrt(36**2 + 24**2))
    assert source == "footage metadata (EXIF 35mm equivalent 28 mm)"


@pytest.mark.parametrize("flags,container", [("use_metadata_tags", "mov"),
                                             ("use_metadata_tags+faststart", "mp4")])
def test_quicktime_keys_read_like_ffmpeg_reads_them(tmp_path, flags, container):
    """The standard-library reader (what Blender uses: no PyAV there) gives what FFmpeg reads back."""
    movie = tagged_movie(tmp_path / f"clip.{container}", "26", flags=flags, container=container)
    from blender_stchain.lens import _moov

    ours = quicktime_keys(_moov(movie))
    with av.open(str(movie)) as c:
        theirs = dict(c.metadata)
    assert {APPLE_KEY, "com.apple.quicktime.make", "encoder"} <= set(ours)  # FFmpeg adds its own key
    assert {k: theirs[k] for k in ours} == ours and ours[APPLE_KEY] == "26"
    assert video_lens(movie).focal_35mm == 26.0


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


@pytest.mark.parametrize("code,raw", [(21, struct.pack(">h", 26)), (22, struct.pack(">I", 26)),
                                      (23, struct.pack(">f", 26.0))])
def test_numeric_quicktime_values(code, raw):
    """Cameras store numbers as typed values (21 signed, 22 unsigned big-endian integers, 23 float32):
    a QuickTime-style moov/meta (no version and flags) laid out per Apple's metadata format."""
    key = APPLE_KEY.encode()
    keys = box(b"keys", struct.pack(">II", 0, 1) + struct.pack(">I4s", 8 + len(key), b"mdta") + key)
    item = box(struct.pack(">I", 1), box(b"data", struct.pack(">II", code, 0) + raw))
    meta = box(b"meta", box(b"hdlr", bytes(8) + b"mdta" + bytes(13)) + keys + box(b"ilst", item))
    assert quicktime_keys(box(b"mvhd", bytes(100)) + meta) == {APPLE_KEY: 26}


def test_quicktime_35mm_equivalent_of_a_movie(tmp_path):
    movie = tagged_movie(tmp_path / "clip.mov", "26")
    clip = open_footage(movie)
    try:
        focal, source = known_focal(Settings(), clip)
        assert source == "footage metadata (QuickTime 35mm equivalent 26 mm)"
        assert focal == pytest.approx(26.0 * math.hypot(160, 90) / math.hypot(36, 24))
        given, given_source = known_focal(Settings(camera_focal_mm=50.0, camera_sensor_mm=24.0), clip)
        assert (given, given_source) == (pytest.approx(50.0 / 24.0 * 160), "given")  # the user wins
        pixels = known_focal(Settings(camera_focal_px=321.0, camera_focal_mm=50.0), clip)
        assert pixels == (321.0, "given")
        blender = known_focal(Settings(camera_focal_mm=35.0, camera_focal_source="clip camera"), clip)
        assert blender == (pytest.approx(35.0 / 36.0 * 160), "clip camera")
        assert known_focal(Settings(camera_footage_lens="ignore"), clip) == (None, "solved")
    finally:
        clip.close()


def test_footage_without_a_lens_is_solved(tmp_path):
    """Real footage says nothing (DAVIS frames, an FFmpeg re-encode, a phone clip stripped of its keys);
    a key that is not a number is no lens either."""
    assert image_lens(DATA / "horsejump_gt" / "video" / "00000.jpg") is None
    for name in ("bear", "teddy"):
        assert video_lens(DATA / "videos" / f"{name}.mp4") is None
    assert video_lens(tagged_movie(tmp_path / "odd.mov", "wide")) is None
    clip = open_footage(DATA / "videos" / "bear.mp4", frames=(1, 2))
    try:
        assert known_focal(Settings(), clip) == (None, "solved")
    finally:
        clip.close()


def test_focal_mm_and_sensor_mm_on_the_command_line(tmp_path):
    footage = str(DATA / "videos" / "bear.mp4")
    base = ["--footage", footage, "--out", str(tmp_path / "r.safetensors")]
    job = parse_job(base + ["--focal-mm", "50", "--sensor-mm", "23.5"], "stchain run", blender=False).job
    assert job.settings == {"camera_focal_mm": 50.0, "camera_sensor_mm": 23.5}
    assert job.resolved_settings().camera_focal_mm == 50.0
    assert parse_job(base + ["--focal-mm", "35"], "stchain run", blender=False).job.settings == {
        "camera_focal_mm": 35.0}
    for extra, says in ((["--focal-mm", "wide"], "--focal-mm must be a number of millimetres"),
                        (["--focal-mm", "-4"], "--focal-mm -4: setting camera_focal_mm must be at least"),
                        (["--sensor-mm", "24"], "--sensor-mm needs --focal-mm")):
        with pytest.raises(UsageError, match=says):
            parse_job(base + extra, "stchain run", blender=False)
